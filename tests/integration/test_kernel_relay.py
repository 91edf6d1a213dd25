"""relay: kernel beyond the relay's own behaviour (test_relay.py runs that on
every relay): the kernel refusing BPF for real (no capabilities), `auto` on
services the kernel cannot carry, the configuration rules, and a reload that
turns the kernel relay on.
"""

import shutil
import threading

import pytest

from harness import (connect, echo_roundtrip, random_bytes, run_zklb, sha256, static_service, stream,
                     to_yaml, wait_until, zklb_binary, zklb_config)

SVC = "web"


def unprivileged_zklb(workdir):
    """A wrapper that runs zklb as root without any capability (setpriv), so
    bpf() is refused as it is for an unprivileged service."""
    wrapper = workdir / "zklb-nocaps"
    wrapper.write_text("#!/bin/sh\nexec setpriv --inh-caps=-all --ambient-caps=-all "
                       f"--bounding-set=-all -- {zklb_binary()} \"$@\"\n")
    wrapper.chmod(0o755)
    return wrapper


@pytest.mark.skipif(shutil.which("setpriv") is None, reason="needs setpriv (util-linux)")
def test_kernel_relay_refused_without_capabilities(backend, zklb, tmp_path):
    """bpf() refused: zklb starts, says so once, and relays every connection in
    user space, counted as fallbacks."""
    b = backend("b1", "echo")
    lb = zklb(services={SVC: static_service([b], relay="kernel")}, start=False)
    lb.binary = unprivileged_zklb(tmp_path)
    lb.start()
    for n in (1, 70_000, 3 << 20):
        data = random_bytes(n, seed=n)
        got = stream(lb.listen(SVC), data)
        assert sha256(got) == sha256(data)
    log = lb.log()
    assert log.count("the kernel relay is not available") == 1, log
    m = lb.metrics()
    assert m.value("zklb_kernel_relay_available") == 0
    assert m.value("zklb_service_kernel_fallbacks_total", service=SVC) == 3
    assert m.value("zklb_service_kernel_relays_total", service=SVC) == 0
    r = lb.services()[SVC]["relay"]
    assert (r["mode"], r["in_use"], r["kernel_fallbacks"]) == ("kernel", "user", 3)


def talk_until_paired(lb, service, s, most=200):
    """Echo exchanges on s until relay: auto has paired it (it waits for a
    moment both sockets are quiet, which the next request may race), at most
    `most` of them; the caller checks the count."""
    for i in range(most):
        msg = b"message %d\n" % i
        assert echo_roundtrip(s, msg) == msg
        if i >= 4 and lb.services()[service]["relay"]["kernel_connections"] >= 1:
            return


def test_auto_keeps_what_the_kernel_cannot_carry_in_user_space(backend, zklb):
    """relay: auto at the top: a plain service's lasting connection goes kernel,
    a pooled one stays user (and is not counted as a fallback)."""
    b = backend("b1", "echo")
    lb = zklb(services={
        "plain": static_service([b]),
        "pooled": static_service([b], pool={"reuse": "redis"}),
    }, relay="auto")
    for name in ("plain", "pooled"):
        s = connect(lb.listen(name))
        talk_until_paired(lb, name, s)
        s.close()
    svcs = lb.services()
    assert svcs["plain"]["relay"]["in_use"] == "kernel"
    assert svcs["plain"]["relay"]["kernel_connections"] == 1
    assert svcs["pooled"]["relay"]["in_use"] == "user"
    assert (svcs["pooled"]["relay"]["kernel_connections"],
            svcs["pooled"]["relay"]["kernel_fallbacks"]) == (0, 0)


@pytest.mark.parametrize("extra, why", [
    ({"pool": {"reuse": "http1"}}, "pool.reuse"),
    ({"listen": "unix:/tmp/zklb-kernel-test.sock"}, "unix:"),
], ids=["pool", "unix"])
def test_kernel_refuses_what_it_cannot_carry(tmp_path, extra, why):
    svc = static_service(["127.0.0.1:1"], relay="kernel")
    svc.update(extra)
    path = tmp_path / "z.yaml"
    path.write_text(to_yaml(zklb_config({SVC: svc})))
    r = run_zklb(["check", "-c", str(path)])
    assert r.returncode == 1, r.stdout + r.stderr
    assert "relay" in (r.stdout + r.stderr) and why in (r.stdout + r.stderr)


def test_top_level_kernel_leaves_pooled_services_alone(tmp_path):
    """A top-level relay: kernel is a default: a pooled service stays valid."""
    path = tmp_path / "z.yaml"
    path.write_text(to_yaml(zklb_config(
        {SVC: static_service(["127.0.0.1:1"], pool={"reuse": "http1"})}, relay="kernel")))
    r = run_zklb(["check", "-c", str(path)])
    assert r.returncode == 0, r.stdout + r.stderr


def test_reload_moves_new_connections_to_the_kernel(backend, zklb):
    """relay: user -> kernel by SIGHUP: the program loads then, the open
    connection stays in user space and keeps working, new ones go kernel."""
    b = backend("b1", "echo")
    lb = zklb(services={SVC: static_service([b])})
    old = connect(lb.listen(SVC))
    assert echo_roundtrip(old) == b"ping\n"
    assert lb.metrics().value("zklb_kernel_relay_available") == 0
    cfg = dict(lb.config)
    cfg["relay"] = "kernel"
    lb.reload(cfg)
    wait_until(lambda: lb.metrics().value("zklb_kernel_relay_available") == 1, 5,
               what="the kernel relay loaded by the reload")
    # The workers take the new configuration a moment after the control thread.
    new = None
    for _ in range(50):
        if new:
            new.close()
        new = connect(lb.listen(SVC))
        assert echo_roundtrip(new, b"kernel\n") == b"kernel\n"
        if lb.services()[SVC]["relay"]["kernel_connections"] == 1:
            break
    assert echo_roundtrip(old, b"still user\n") == b"still user\n"
    r = lb.services()[SVC]["relay"]
    assert (r["mode"], r["in_use"], r["kernel_connections"]) == ("kernel", "kernel", 1)
    old.close()
    new.close()


def test_auto_pairs_connections_that_stay_and_keeps_every_byte(backend, zklb):
    """relay: auto leaves a one-exchange connection in user space and pairs one
    that keeps talking, mid-stream: every byte before, across and after the
    switch arrives once and in order."""
    b = backend("b1", "echo")
    lb = zklb(services={SVC: static_service([b], relay="auto")})
    short = connect(lb.listen(SVC))
    assert echo_roundtrip(short) == b"ping\n"
    short.close()
    s = connect(lb.listen(SVC), timeout=30)
    talk_until_paired(lb, SVC, s)
    r = lb.services()[SVC]["relay"]
    assert (r["mode"], r["in_use"], r["kernel_connections"]) == ("auto", "kernel", 1), r
    data = random_bytes(4 << 20, seed=9)
    got = bytearray()

    def read_back():
        while len(got) < len(data):
            chunk = s.recv(1 << 16)
            if not chunk:
                break
            got.extend(chunk)

    reader = threading.Thread(target=read_back)
    reader.start()
    s.sendall(data)
    reader.join(30)
    assert len(got) == len(data) and sha256(bytes(got)) == sha256(data)
    assert echo_roundtrip(s, b"after\n") == b"after\n"
    s.close()
    b.wait_active(0)
