"""The Debian package: packaging/build-deb builds zklb_*.deb from a copy of the
tree with `dpkg-buildpackage -b -us -uc` and lintian finds no error or warning;
`dpkg -i` installs it on this machine, and then `zklb --version` is the tree's
version, `zklb check` accepts the shipped /etc/zklb/zklb.yaml (also as the zklb
system user the package creates), `systemd-analyze verify` accepts the unit,
and the man pages render and document every key of the reference
configuration; `dpkg -P` leaves no file, directory, user or group behind.

Root only (it installs a package); it refuses to run when a zklb package or
/usr/bin/zklb is already there rather than replace someone's install.
"""

import fcntl
import grp
import os
import pwd
import subprocess
from pathlib import Path

import pytest
import yaml

from harness import ROOT, project_version, wait_until

pytestmark = [
    pytest.mark.skipif(os.geteuid() != 0, reason="installs a Debian package: needs root"),
    pytest.mark.timeout(600),
]

ETC = Path("/etc/zklb")
STATE = Path("/var/lib/zklb")
UNIT = Path("/lib/systemd/system/zklb.service")


def run(args, timeout=120, **kw):
    return subprocess.run(args, capture_output=True, text=True, timeout=timeout,
                          stdin=subprocess.DEVNULL, **kw)


def installed():
    r = run(["dpkg-query", "-W", "-f=${db:Status-Abbrev}", "zklb"])
    return r.returncode == 0 and r.stdout.startswith("i")


def dpkg(*args):
    """dpkg ARGS, waiting (bounded) while another dpkg or apt holds the lock."""
    last = None

    def attempt():
        nonlocal last
        last = run(["dpkg", *args])
        return last.returncode == 0 or "lock" not in last.stderr
    wait_until(attempt, timeout=120, interval=1, what="the dpkg lock")
    assert last.returncode == 0, f"dpkg {' '.join(args)}: {last.stdout}{last.stderr}"
    return last


def config_key_paths(node, prefix=""):
    """Key paths of a configuration as zklb.yaml(5) writes them:
    services.NAME.listen, announce[].port (top-level lists are lists of entries)."""
    out = set()
    if isinstance(node, dict):
        for k, v in node.items():
            path = f"{prefix}.{k}" if prefix else k
            if prefix == "" and k == "services":
                out.add("services")
                for svc in v.values():
                    out |= config_key_paths(svc, "services.NAME")
                continue
            out.add(path)
            if k != "payload":          # any value: its keys are the user's
                out |= config_key_paths(v, path)
    elif isinstance(node, list) and "." not in prefix:      # announce:, sync:, render:
        for item in node:
            out |= config_key_paths(item, prefix + "[]")
    return out


@pytest.fixture
def package_lock():
    # One package test per machine at a time: other worktrees run this suite too.
    with open("/tmp/zklb-package-test.lock", "w") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        yield


def test_package_build_install_purge(tmp_path, package_lock):
    assert not installed(), "a zklb package is installed on this machine; dpkg -P zklb first"
    assert not Path("/usr/bin/zklb").exists(), "/usr/bin/zklb exists (installed by hand?)"
    assert not ETC.exists() and not STATE.exists(), f"{ETC} or {STATE} exists already"

    out = tmp_path / "out"
    r = run([str(ROOT / "packaging" / "build-deb"), str(out), "--lintian"], timeout=480)
    assert r.returncode == 0, f"build-deb failed:\n{r.stdout}{r.stderr}"
    version = project_version()
    deb = out / f"zklb_{version}_{run(['dpkg', '--print-architecture']).stdout.strip()}.deb"
    assert deb.exists(), sorted(p.name for p in out.iterdir())
    # The build worked on a copy: the tree has no debian/ and no build output of it.
    assert not (ROOT / "debian").exists()

    files = []
    try:
        dpkg("-i", str(deb))
        assert installed()
        files = run(["dpkg", "-L", "zklb"]).stdout.split()

        r = run(["zklb", "--version"])
        assert (r.returncode, r.stdout.strip()) == (0, f"zklb {version}"), r
        assert Path(run(["sh", "-c", "command -v zklb"]).stdout.strip()) == Path("/usr/bin/zklb")

        conf = ETC / "zklb.yaml"
        assert conf.read_bytes() == (ROOT / "conf" / "zklb.yaml").read_bytes()
        conffiles = run(["dpkg-query", "-W", "-f=${Conffiles}", "zklb"]).stdout
        assert str(conf) in conffiles, conffiles
        r = run(["zklb", "check", "-c", str(conf)])
        assert r.returncode == 0 and r.stdout.startswith(f"{conf}: ok"), r

        # The system user exists, has no login, and can read the configuration
        # (what a proxy-only host's `User=zklb` drop-in needs).
        user = pwd.getpwnam("zklb")
        assert user.pw_shell in ("/usr/sbin/nologin", "/bin/false"), user
        assert user.pw_uid < 1000, user
        r = run(["runuser", "-u", "zklb", "--", "zklb", "check", "-c", str(conf)])
        assert r.returncode == 0, r

        assert UNIT.exists()
        r = run(["systemd-analyze", "verify", str(UNIT)])
        assert r.returncode == 0, f"systemd-analyze verify: {r.stdout}{r.stderr}"
        assert "ExecStart=/usr/bin/zklb -c /etc/zklb/zklb.yaml" in UNIT.read_text()

        env = dict(os.environ, MANWIDTH="200", MANPAGER="cat", PAGER="cat")
        pages = {}
        for name, section in (("zklb", "8"), ("zklb.yaml", "5"), ("zklb-bench", "1")):
            r = run(["man", section, name], env=env)
            assert r.returncode == 0 and r.stdout, f"man {section} {name}: {r.stderr}"
            w = run(["man", "--warnings", section, name], env=env)
            assert "warning" not in w.stderr, f"man {section} {name}: {w.stderr}"
            pages[name] = r.stdout
        for word in ("zklb check", "SIGHUP", "SIGTERM", "EXIT STATUS", "/etc/zklb/zklb.yaml"):
            assert word in pages["zklb"], word
        # Every key of the reference configuration is documented.
        # announce[].check is documented once, as services.NAME.health.check.
        keys = {k.replace("announce[].check.", "services.NAME.health.check.")
                for k in config_key_paths(yaml.safe_load(conf.read_text()))}
        assert len(keys) > 40, keys
        missing = sorted(k for k in keys if k not in pages["zklb.yaml"])
        assert not missing, f"zklb.yaml(5) does not document {missing}"
    finally:
        if installed():
            dpkg("-P", "zklb")

    assert not installed()
    assert run(["dpkg-query", "-W", "zklb"]).returncode != 0, "zklb still known to dpkg"
    left = [f for f in files if os.path.lexists(f) and not os.path.isdir(f)]
    assert not left, f"left behind: {left}"
    dirs = [f for f in files if "zklb" in f and os.path.isdir(f)]
    assert not dirs, f"directories left behind: {dirs}"
    assert not ETC.exists() and not STATE.exists()
    with pytest.raises(KeyError):
        pwd.getpwnam("zklb")
    with pytest.raises(KeyError):
        grp.getgrnam("zklb")
    assert not list(Path("/etc/systemd/system").rglob("zklb*"))
