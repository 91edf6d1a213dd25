"""The command line: `zklb check -c FILE` on every shipped configuration, on a
generated one and on broken ones (each problem as FILE:LINE:COL:, exit 1);
`zklb -c` with a broken file exits 1; --version, --help; usage errors exit 2
and say why on stderr.
"""

import re

import pytest

import harness
from harness import ROOT, run_zklb, static_service

SVC = "web"


def test_check_shipped_configs():
    # Every file in conf/, so that a new one is covered without touching this test;
    # the ones the README and tests/demo name must be among them.
    shipped = sorted(p for p in (ROOT / "conf").iterdir() if p.is_file())
    names = {p.name for p in shipped}
    for name in ("zklb.yaml", "demo.yaml", "demo-zookeeper.yaml"):
        assert name in names, f"{ROOT / 'conf' / name} is missing"
    for path in shipped:
        r = run_zklb(["check", "-c", str(path)])
        assert r.returncode == 0, f"zklb check {path} → {r.returncode}\n{r.stdout}{r.stderr}"


def test_check_generated_config(tmp_path):
    path = tmp_path / "ok.yaml"
    path.write_text(harness.to_yaml(harness.zklb_config(
        {SVC: static_service(["127.0.0.1:9001", ("127.0.0.1:9002", 3)])})))
    r = run_zklb(["check", "-c", str(path)])
    assert r.returncode == 0, r.stdout + r.stderr


BROKEN = """\
admin:
  listen: "127.0.0.1:9901"
services:
  web:
    listen: "127.0.0.1:8080"
    bogus_key: 1
    discovery:
      type: static
      backends: ["127.0.0.1:9001"]
    balance: fastest
"""


def test_check_reports_every_problem_with_position(tmp_path):
    path = tmp_path / "broken.yaml"
    path.write_text(BROKEN)
    r = run_zklb(["check", "-c", str(path)])
    out = r.stdout + r.stderr
    assert r.returncode == 1, f"exit {r.returncode}\n{out}"
    assert re.search(rf"^{re.escape(str(path))}:6:5: .*bogus_key", out, re.M), out
    assert re.search(rf"^{re.escape(str(path))}:10:\d+: ", out, re.M), out


def test_check_yaml_syntax_error(tmp_path):
    path = tmp_path / "syntax.yaml"
    path.write_text('admin:\n  listen: "127.0.0.1:9901"\nservices: [unclosed\n')
    r = run_zklb(["check", "-c", str(path)])
    assert r.returncode == 1
    assert re.search(rf"^{re.escape(str(path))}:\d+:\d+: ", r.stdout + r.stderr, re.M), \
        r.stdout + r.stderr


def test_check_missing_file(tmp_path):
    path = tmp_path / "nope.yaml"
    r = run_zklb(["check", "-c", str(path)])
    assert r.returncode == 1
    assert str(path) in r.stdout + r.stderr


def test_run_with_broken_config_exits_1(tmp_path):
    path = tmp_path / "broken.yaml"
    path.write_text(BROKEN)
    r = run_zklb(["-c", str(path)])
    assert r.returncode == 1
    assert str(path) in r.stderr + r.stdout


def test_version():
    r = run_zklb(["--version"])
    assert r.returncode == 0
    assert harness.project_version() in r.stdout


def test_help():
    r = run_zklb(["--help"])
    assert r.returncode == 0
    assert "check" in r.stdout and "-c" in r.stdout


@pytest.mark.parametrize("args", [[], ["--bogus"], ["check"], ["-c"], ["frobnicate"]],
                         ids=["none", "bogus-option", "check-without-c", "c-without-file",
                              "unknown-command"])
def test_bad_usage_exits_2(args):
    r = run_zklb(args)
    assert r.returncode == 2, f"{args} → {r.returncode}\n{r.stdout}{r.stderr}"
    assert r.stderr.strip(), "usage errors should explain themselves on stderr"
