"""The TCP proxy with static discovery, against DESIGN.md's contract: relaying,
half-close, balancing, retries, timeouts, reload, drain, admin API, FD exhaustion,
and the command line.

Each test declares its backends and zklb config; conftest.py starts and stops them.
Metric names and the /services JSON shape are in harness.py (METRIC, services_of).
"""

import random
import re
import signal
import socket
import threading
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor

import pytest

import harness
from harness import (METRIC, ROOT, ask_tag, backend_labels, close_all, closed_within,
                     connect, connect_refused, hold, instance_address, instances_of,
                     random_bytes, recv_all, run_zklb, sha256, static_service, tags,
                     wait_until)

SVC = "web"


def echo_roundtrip(sock, payload=b"ping\n"):
    sock.sendall(payload)
    got = b""
    while len(got) < len(payload):
        chunk = sock.recv(65536)
        if not chunk:
            break
        got += chunk
    return got


def stream(addr, data, timeout=60.0):
    """Send data (then SHUT_WR) while reading everything back; return what came back."""
    s = connect(addr, timeout)
    err = []

    def send():
        try:
            s.sendall(data)
            s.shutdown(socket.SHUT_WR)
        except OSError as e:
            err.append(e)

    t = threading.Thread(target=send)
    t.start()
    try:
        got = recv_all(s, timeout=timeout)
    finally:
        t.join(timeout)
        s.close()
    assert not err, f"send failed: {err[0]!r}"
    return got


# --------------------------------------------------------------------------- relay


def test_relay_exact_bytes_both_directions(backend, zklb):
    b = backend("b1", "echo")
    lb = zklb(services={SVC: static_service([b])})
    seed = random.randrange(1 << 30)
    rng = random.Random(seed)
    sizes = [0, 1, 4095, 65536, 65537, 1 << 20] + [rng.randrange(1, 5 << 20) for _ in range(3)]
    payloads = [random_bytes(n, seed + i) for i, n in enumerate(sizes)]
    with ThreadPoolExecutor(len(payloads)) as ex:
        results = list(ex.map(lambda d: stream(lb.listen(SVC), d), payloads))
    for n, sent, got in zip(sizes, payloads, results):
        assert len(got) == n and sha256(got) == sha256(sent), \
            f"size {n} (seed {seed}): got {len(got)} bytes back"
    assert b.accepts == len(payloads)


def test_server_speaks_first_and_large_download(backend, zklb):
    blob = random_bytes(3 << 20, seed=7)

    class Source(harness.Protocol):
        def on_open(self):
            self.conn.send(blob)
            self.conn.close_after_flush()

    b = backend("src", Source)
    lb = zklb(services={SVC: static_service([b])})
    s = connect(lb.listen(SVC))
    got = recv_all(s, timeout=30)
    s.close()
    assert sha256(got) == sha256(blob)


def test_half_close_client_first(backend, zklb):
    """Client SHUT_WR reaches the backend, whose reply still flows back."""
    b = backend("d", "digest")
    lb = zklb(services={SVC: static_service([b])})
    data = random_bytes(300_000, seed=3)
    s = connect(lb.listen(SVC))
    s.sendall(data)
    s.shutdown(socket.SHUT_WR)
    reply = recv_all(s, timeout=10)
    s.close()
    assert reply.decode() == f"{len(data)} {sha256(data)}\n"


def test_half_close_server_first(backend, zklb):
    """Backend SHUT_WR reaches the client, who can still send."""
    class GreetAndShut(harness.Protocol):
        def on_open(self):
            self.conn.send(b"bye\n")
            self.conn.shutdown_after_flush()

    b = backend("g", GreetAndShut)
    lb = zklb(services={SVC: static_service([b])})
    s = connect(lb.listen(SVC))
    assert recv_all(s, timeout=5) == b"bye\n"     # EOF while our side is open
    data = random_bytes(100_000, seed=4)
    s.sendall(data)
    s.shutdown(socket.SHUT_WR)
    wait_until(lambda: b.bytes_received == len(data), 5,
               what=f"backend received {len(data)} bytes (has {b.bytes_received})")
    assert closed_within(s, 5) is not None
    s.close()


# --------------------------------------------------------------------------- balancing


def test_least_conn_picks_least_loaded(backend, zklb):
    bs = [backend(f"b{i}", "tag") for i in (1, 2, 3)]
    lb = zklb(services={SVC: static_service(bs, balance="least_conn")})
    addr = lb.listen(SVC)
    held = hold(addr, 6)
    try:
        assert Counter(t for t, _ in held) == {"b1": 2, "b2": 2, "b3": 2}
        # Free b2 entirely: the next two connections must both land there.
        for t, s in held:
            if t == "b2":
                s.close()
        held = [(t, s) for t, s in held if t != "b2"]
        bs[1].wait_active(0)
        wait_until(lambda: lb.backend_metric("active", SVC, bs[1]) in (0, None), 5,
                   what="zklb to count b2's connections closed")
        more = hold(addr, 2)
        held += more
        assert [t for t, _ in more] == ["b2", "b2"]
        # Now 2/2/2 again: one more each round.
        more = hold(addr, 3)
        held += more
        assert sorted(t for t, _ in more) == ["b1", "b2", "b3"]
    finally:
        close_all(held)


def test_least_conn_weights_over_1000_held_connections(backend, zklb):
    """Weighted least_conn with every connection held open is deterministic:
    each backend's share follows its weight to within a couple of connections."""
    weights = {"b1": 1, "b2": 2, "b3": 5}
    bs = {n: backend(n, "tag") for n in weights}
    lb = zklb(services={SVC: static_service([(bs[n], w) for n, w in weights.items()],
                                            balance="least_conn")},
              nofile=8192)
    held = []
    try:
        held = hold(lb.listen(SVC), 1000)
        got = Counter(t for t, _ in held)
    finally:
        close_all(held)
    total = sum(weights.values())
    for n, w in weights.items():
        want = 1000 * w / total
        assert abs(got[n] - want) <= 5, f"{n} weight {w}: {got[n]} of 1000, want ≈{want}"


@pytest.mark.parametrize("balance,sigmas", [("round_robin", 0), ("random", 6)])
def test_weights_over_1000_connections(backend, zklb, balance, sigmas):
    """1,000 short sequential connections. round_robin: proportions exact up to
    one round per worker; random: within 6 standard deviations (p ≈ 2e-9 to flake)."""
    weights = {"b1": 1, "b2": 2, "b3": 5}
    bs = {n: backend(n, "tag") for n in weights}
    lb = zklb(services={SVC: static_service([(bs[n], w) for n, w in weights.items()],
                                            balance=balance)})
    n_conn = 1000
    got = tags(lb.listen(SVC), n_conn)
    total = sum(weights.values())
    for n, w in weights.items():
        p = w / total
        want = n_conn * p
        tol = max(2 * total, sigmas * (n_conn * p * (1 - p)) ** 0.5)
        assert abs(got[n] - want) <= tol, f"{balance}: {n} weight {w}: {got[n]}, want ≈{want}"


# --------------------------------------------------------------------------- failures


@pytest.mark.parametrize("balance", ["least_conn", "round_robin", "random", "p2c"])
def test_dead_backends_cost_the_client_nothing(backend, closed_port, zklb, balance):
    good = backend("good", "tag")
    dead = [closed_port(), closed_port()]
    # Refused connects cost nothing: a connection that waited for a connect_timeout
    # (5 s) instead would take twice the bound, which leaves room for a loaded machine.
    lb = zklb(services={SVC: static_service([dead[0], good, dead[1]], balance=balance,
                                            retries=2, connect_timeout="5s")})
    addr = lb.listen(SVC)
    for i in range(100):
        t0 = time.monotonic()
        assert ask_tag(addr) == "good", f"connection {i}"
        assert time.monotonic() - t0 < 2.5, f"connection {i} took {time.monotonic() - t0:.2f}s"
    assert good.accepts == 100


def test_retries_never_revisit_a_backend(backend, closed_port, zklb):
    """retries: 12 over 12 refusing instances and one good one: every attempt of a
    client goes to a backend it has not tried yet, so the 13th at the latest is
    the good one. (Nothing is ejected: failures_to_eject is out of reach.)"""
    good = backend("good", "tag")
    dead = [closed_port() for _ in range(12)]
    lb = zklb(services={SVC: static_service(
        dead[:6] + [good] + dead[6:], balance="random", retries=12, connect_timeout="1s",
        health={"failures_to_eject": 1000})})
    addr = lb.listen(SVC)
    assert [ask_tag(addr, timeout=5) for _ in range(40)] == ["good"] * 40
    m = lb.metrics()
    assert m.value("zklb_service_connections_failed_total", service=SVC) == 0
    assert m.value("zklb_service_retries_total", service=SVC) >= 40


def test_backend_reset_before_first_byte_is_survived(backend, zklb):
    """A backend that accepts and resets is not the client's problem for long:
    it is ejected after failures_to_eject and the rest of the traffic is served."""
    bad = backend("bad", "rst")
    good = backend("good", "tag")
    lb = zklb(services={SVC: static_service(
        [bad, good], balance="round_robin", retries=2,
        health={"failures_to_eject": 3, "base_ejection": "30s"})})
    addr = lb.listen(SVC)
    ok = 0
    for _ in range(50):
        try:
            if ask_tag(addr, timeout=2) == "good":
                ok += 1
        except OSError:
            pass
    # Without ejection round_robin would fail every other connection (25 of 50).
    # failures_to_eject is 3; ejection may lag a pick or two behind the failure
    # (it is decided off the data path), hence the margin.
    assert ok >= 50 - 8, f"only {ok} of 50 connections served"
    assert bad.accepts <= 8


def test_connect_timeout_single_blackholed_backend(blackhole, zklb):
    bh = blackhole()
    lb = zklb(services={SVC: static_service([bh], connect_timeout="400ms", retries=0)})
    t0 = time.monotonic()
    s = connect(lb.listen(SVC))
    s.sendall(b"hello?")
    closed = closed_within(s, 5)
    took = time.monotonic() - t0
    s.close()
    assert closed is not None, "client connection still open 5s after a 400ms connect_timeout"
    assert 0.3 <= took <= 3.0, f"closed after {took:.2f}s, connect_timeout is 0.4s"


def test_connect_timeout_retries_on_good_backend(blackhole, backend, zklb):
    bh = blackhole()
    good = backend("good", "tag")
    lb = zklb(services={SVC: static_service([bh, good], balance="round_robin",
                                            connect_timeout="300ms", retries=1)})
    addr = lb.listen(SVC)
    for i in range(10):
        t0 = time.monotonic()
        assert ask_tag(addr, timeout=5) == "good", f"connection {i}"
        took = time.monotonic() - t0
        assert took < 3.0, f"connection {i} took {took:.2f}s (connect_timeout 0.3s, retries 1)"
    m = lb.metrics()
    failures = m.value(METRIC["connect_failures"], **backend_labels(SVC, bh))
    assert failures is not None and failures >= 1, \
        f"{METRIC['connect_failures']} for the blackhole: {failures}"


def test_idle_timeout_closes_idle_relay(backend, zklb):
    b = backend("b1", "echo")
    lb = zklb(services={SVC: static_service([b], idle_timeout="600ms")})
    addr = lb.listen(SVC)
    busy = connect(addr)
    idle = connect(addr)
    assert echo_roundtrip(idle) == b"ping\n"
    t0 = time.monotonic()
    closed = None
    # The busy connection talks every 200ms and must outlive the idle one.
    while time.monotonic() - t0 < 3.0:
        assert echo_roundtrip(busy) == b"ping\n", \
            f"busy connection dropped after {time.monotonic() - t0:.2f}s"
        if closed is None:
            took = closed_within(idle, 0.2)
            if took is not None:
                closed = time.monotonic() - t0
        else:
            time.sleep(0.2)
    busy.close()
    idle.close()
    assert closed is not None, "idle connection still open after 3s, idle_timeout 600ms"
    assert 0.4 <= closed <= 3.0
    b.wait_active(0)


# --------------------------------------------------------------------------- reload


def _refusal_watch(addr, stop, refused):
    """Connect to addr in a loop until stop is set; record refused connects."""
    while not stop.is_set():
        try:
            s = socket.create_connection(addr, timeout=2)
            s.close()
        except ConnectionRefusedError:
            refused.append(time.monotonic())
        except OSError:
            pass
        time.sleep(0.005)


def test_reload_keeps_connections_and_applies_backends(backend, zklb):
    b1 = backend("b1", "tag")
    b2 = backend("b2", "tag")
    lb = zklb(services={SVC: static_service([b1])})
    addr = lb.listen(SVC)
    tag, old = ask_tag(addr, keep=True)
    assert tag == "b1"
    pid = lb.pid
    stop, refused = threading.Event(), []
    watcher = threading.Thread(target=_refusal_watch, args=(addr, stop, refused))
    watcher.start()
    try:
        cfg = dict(lb.config)
        cfg["services"] = {SVC: dict(cfg["services"][SVC],
                                     discovery={"type": "static",
                                                "backends": [b2.address]})}
        lb.reload(cfg)
        wait_until(lambda: ask_tag(addr) == "b2", 5, what="new connections to go to b2")
        assert tags(addr, 20) == {"b2": 20}
    finally:
        stop.set()
        watcher.join(5)
    assert not refused, f"{len(refused)} connects refused during reload"
    assert lb.running() and lb.pid == pid
    assert echo_roundtrip(old) == b"ping\n", "connection opened before reload was cut"
    old.close()


def test_reload_adds_and_removes_listeners(backend, zklb):
    b1 = backend("b1", "tag")
    b2 = backend("b2", "tag")
    lb = zklb(services={"one": static_service([b1])})
    one = lb.listen("one")
    cfg = dict(lb.config)
    cfg["services"] = {"two": static_service([b2])}
    lb.reload(cfg)
    two = lb.listen("two")
    wait_until(lambda: ask_tag(two) == "b2", 5, what="the new service's listener")
    wait_until(lambda: connect_refused(one), 5, what="the removed service's listener to close")
    assert lb.running()


BROKEN_RELOADS = {
    # YAML that does not parse.
    "syntax": lambda text: text.replace("services:\n", "services:\n  web2: [\n"),
    # YAML that parses but does not validate.
    "unknown-key": lambda text: text.replace("services:\n", "services:\n  web2:\n"
                                             "    no_such_setting: 1\n"),
}


@pytest.mark.parametrize("breakage", sorted(BROKEN_RELOADS))
def test_invalid_reload_keeps_old_config(backend, zklb, breakage):
    b1 = backend("b1", "tag")
    b2 = backend("b2", "tag")
    lb = zklb(services={SVC: static_service([b1])})
    addr = lb.listen(SVC)
    good_cfg = lb.config
    mark = lb.log_mark()
    lb.reload(BROKEN_RELOADS[breakage](harness.to_yaml(good_cfg)))
    # The reason is logged as FILE:LINE:COL: message.
    lb.wait_for_log(rf"{re.escape(str(lb.config_path))}:\d+:\d+: ", timeout=5, since=mark)
    time.sleep(0.3)
    assert lb.running(), "zklb exited on an invalid reload"
    assert tags(addr, 10) == {"b1": 10}
    assert lb.admin_get("/healthz")[0] == 200
    # The reload path still works afterwards.
    cfg = dict(good_cfg)
    cfg["services"] = {SVC: dict(good_cfg["services"][SVC],
                                 discovery={"type": "static", "backends": [b2.address]})}
    lb.reload(cfg)
    wait_until(lambda: ask_tag(addr) == "b2", 5, what="valid reload after an invalid one")


# --------------------------------------------------------------------------- drain


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT], ids=["TERM", "INT"])
def test_drain_lets_open_connection_finish(backend, zklb, sig):
    b = backend("b1", "echo")
    lb = zklb(services={SVC: static_service([b])}, drain_timeout="5s")
    addr = lb.listen(SVC)
    s = connect(addr)
    assert echo_roundtrip(s) == b"ping\n"
    t0 = time.monotonic()
    lb.send_signal(sig)
    wait_until(lambda: connect_refused(addr), 3, what="new connections to be refused")
    assert lb.running(), "exited while a connection was still open"
    assert echo_roundtrip(s, b"still here\n") == b"still here\n"
    s.close()
    rc = lb.wait(5)
    assert rc == 0, f"exit code {rc} after drain"
    assert time.monotonic() - t0 < 5.0


def test_drain_timeout_bounds_exit(backend, zklb):
    b = backend("h", "hold")
    lb = zklb(services={SVC: static_service([b])}, drain_timeout="1s")
    s = connect(lb.listen(SVC))
    s.sendall(b"x")
    b.wait_active(1)
    t0 = time.monotonic()
    lb.send_signal(signal.SIGTERM)
    rc = lb.wait(6)
    took = time.monotonic() - t0
    assert rc == 0, f"exit code {rc} after drain_timeout"
    assert 0.8 <= took <= 4.0, f"exited {took:.2f}s after SIGTERM with drain_timeout 1s"
    assert closed_within(s, 2) is not None
    s.close()


# --------------------------------------------------------------------------- admin API


def test_admin_endpoints(backend, closed_port, zklb):
    good = backend("good", "echo")
    dead = closed_port()
    lb = zklb(services={SVC: static_service([good, dead], balance="round_robin",
                                            retries=2)})
    addr = lb.listen(SVC)
    payload = random_bytes(1000, seed=11)
    for _ in range(10):
        assert stream(addr, payload) == payload

    status, headers, body = lb.admin_get("/healthz")
    assert status == 200 and body.strip() == b"ok"

    status, headers, body = lb.admin_get("/")
    assert status == 200 and "text/html" in headers.get("content-type", "")
    assert SVC.encode() in body

    assert lb.admin_get("/no-such-page")[0] == 404

    def settled():
        m = lb.metrics()
        return m.value(METRIC["active"], **backend_labels(SVC, good)) == 0 and m
    m = wait_until(settled, 5, what=f"{METRIC['active']} of {good.address} to reach 0")
    lab = backend_labels(SVC, good)
    assert m.value(METRIC["total"], **lab) == 10, m.names()
    assert m.value(METRIC["bytes_in"], **lab) == 10 * len(payload)
    assert m.value(METRIC["bytes_out"], **lab) == 10 * len(payload)
    assert m.value(METRIC["connect_failures"], **backend_labels(SVC, dead)) >= 1

    held = [connect(addr) for _ in range(3)]
    for s in held:
        assert echo_roundtrip(s) == b"ping\n"
    assert lb.metrics().value(METRIC["active"], **lab) == 3

    svc = lb.services()[SVC]
    assert svc["listen"] == lb.config["services"][SVC]["listen"]
    insts = {instance_address(i): i for i in instances_of(svc)}
    assert set(insts) == {good.address, dead.address}
    for i in insts.values():
        assert {"id", "address", "port", "state", "active", "total", "failures"} <= set(i)
        assert i["state"] in harness.INSTANCE_STATES
    assert insts[good.address]["total"] == 13
    assert insts[good.address]["active"] == 3
    assert insts[good.address]["state"] == "healthy"
    assert insts[dead.address]["failures"] >= 1
    for s in held:
        s.close()


# --------------------------------------------------------------------------- resources


def test_fd_exhaustion_recovers(backend, zklb):
    b = backend("b1", "tag")
    lb = zklb(services={SVC: static_service([b])}, workers=1, nofile=64)
    addr = lb.listen(SVC)
    mark = lb.log_mark()
    clients = []
    served = 0
    try:
        for _ in range(300):
            try:
                tag, s = ask_tag(addr, timeout=3.0, keep=True)
            except OSError:
                break
            if tag != "b1":
                break
            clients.append(s)
            served += 1
        else:
            pytest.fail("300 connections served with RLIMIT_NOFILE 64: limit not applied?")
        assert served >= 5, f"only {served} connections before exhaustion"
        lb.wait_for_log(r"(?i)EMFILE|too many open files|descriptor", timeout=5, since=mark)
        assert lb.running()
    finally:
        for s in clients:
            s.close()
    wait_until(lambda: ask_tag(addr, timeout=1.0) == "b1", 10,
               what="zklb to serve again after the descriptors came back")
    assert tags(addr, 20) == {"b1": 20}
    assert lb.running()


# --------------------------------------------------------------------------- command line


def test_check_shipped_configs():
    for name in ("zklb.yaml", "demo.yaml"):
        path = ROOT / "conf" / name
        assert path.exists(), f"{path} is missing"
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
