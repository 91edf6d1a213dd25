"""Hot binary upgrade (SIGUSR2): the new process takes the very listening
sockets and the ZooKeeper session of the running one. Under steady load —
short connections at a few hundred per second and long-lived connections
that keep streaming — no connection is refused or reset, the session id is
the same before and after, and the announced node is the same node (ctime,
ephemeralOwner). A new binary that fails its start leaves the old one
serving as if nothing happened.

`zklb upgrade -c FILE` does the same through the admin API FILE names (TCP
with the bearer token, or the unix socket) and waits: exit 0 with the new pid
once it serves, exit 1 with the reason when the new binary fails (the old one
serving on), and exit 1 at once when the API refuses the change (no token) or
FILE has no admin API.
"""

import os
import re
import shutil
import signal
import socket
import threading
import time

import pytest

import harness
from harness import Zklb, free_addr, wait_until, zklb_binary

SVC = "web"
ANNOUNCED = "app"


def curator(id_, port):
    import json
    return json.dumps({"name": SVC, "id": id_, "address": "127.0.0.1", "port": port,
                       "sslPort": None, "payload": None, "registrationTimeUTC": 0,
                       "serviceType": "DYNAMIC", "uriSpec": None}).encode()


class Load:
    """Short connections (connect, 16 bytes echoed, close) at `rate` per second,
    and `streams` long-lived connections each echoing 1 KiB every 10 ms, until
    stop(). Every failure is classified: refused, reset, other."""

    def __init__(self, addr, rate=300, streams=4):
        self.addr = addr
        self.rate = rate
        self.n_streams = streams
        self.stop_ev = threading.Event()
        self.lock = threading.Lock()
        self.ok = 0
        self.stream_bytes = 0
        self.failures = {"refused": 0, "reset": 0, "other": 0}
        self.errors = []
        self.threads = []

    def _fail(self, e):
        kind = ("refused" if isinstance(e, ConnectionRefusedError) else
                "reset" if isinstance(e, (ConnectionResetError, BrokenPipeError)) else "other")
        with self.lock:
            self.failures[kind] += 1
            self.errors.append(repr(e))

    def _short(self):
        period = 1.0 / self.rate
        next_at = time.monotonic()
        i = 0
        while not self.stop_ev.is_set():
            i += 1
            payload = b"%015d\n" % i
            try:
                with socket.create_connection(self.addr, timeout=5) as s:
                    s.sendall(payload)
                    got = b""
                    while len(got) < len(payload):
                        chunk = s.recv(64)
                        if not chunk:
                            raise ConnectionResetError("closed before the echo")
                        got += chunk
                    if got != payload:
                        raise AssertionError(f"echo mismatch {got!r}")
                with self.lock:
                    self.ok += 1
            except (OSError, AssertionError) as e:
                self._fail(e)
            next_at += period
            delay = next_at - time.monotonic()
            if delay > 0:
                time.sleep(delay)

    def _stream(self, k):
        chunk = bytes([65 + k]) * 1024
        try:
            with socket.create_connection(self.addr, timeout=5) as s:
                while not self.stop_ev.is_set():
                    s.sendall(chunk)
                    got = b""
                    while len(got) < len(chunk):
                        part = s.recv(len(chunk) - len(got))
                        if not part:
                            raise ConnectionResetError("stream closed by the proxy")
                        got += part
                    assert got == chunk
                    with self.lock:
                        self.stream_bytes += len(chunk)
                    time.sleep(0.01)
                s.shutdown(socket.SHUT_WR)
                s.recv(1)
        except (OSError, AssertionError) as e:
            self._fail(e)

    def start(self):
        self.threads = [threading.Thread(target=self._short, daemon=True) for _ in range(2)]
        self.rate /= 2	# per thread
        self.threads += [threading.Thread(target=self._stream, args=(k,), daemon=True)
                         for k in range(self.n_streams)]
        for t in self.threads:
            t.start()
        return self

    def stop(self):
        self.stop_ev.set()
        for t in self.threads:
            t.join(15)


def new_pid(lb, since):
    m = lb.wait_for_log(r"upgrade: pid (\d+) serves; the old process drains", 30, since=since)
    return int(m.group(1))


def stop_pid(pid):
    try:
        os.kill(pid, signal.SIGTERM)
    except ProcessLookupError:
        return
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return
        time.sleep(0.05)
    os.kill(pid, signal.SIGKILL)


@pytest.mark.zookeeper
@pytest.mark.slow
def test_upgrade_under_load(backend, zklb, zookeeper, zk_client, workdir):
    b1 = backend("b1", "echo")
    zk_client.create(f"/services/{SVC}/b1", curator("b1", b1.port), makepath=True,
                     ephemeral=True)
    listen = free_addr()
    lb = zklb(services={SVC: {"listen": listen,
                              "discovery": {"type": "curator", "path": f"/services/{SVC}"}}},
              zookeeper={"hosts": zookeeper.hosts, "session_timeout": "4s"},
              announce=[{"service": ANNOUNCED, "address": "127.0.0.1", "port": b1.port}],
              admin=f"unix:{workdir / 'admin.sock'}", drain_timeout="20s")
    wait_until(lambda: len(lb.services()[SVC]["instances"]) == 1, 10, what="discovery")
    wait_until(lambda: zk_client.exists(f"/services/{ANNOUNCED}") and
               zk_client.get_children(f"/services/{ANNOUNCED}"), 10, what="announce")
    (node,) = zk_client.get_children(f"/services/{ANNOUNCED}")
    node = f"/services/{ANNOUNCED}/{node}"
    before = zk_client.exists(node)
    session = lb.admin_json("/services")["zookeeper"]["session_id"]
    assert int(session, 16) == before.ephemeralOwner

    old_pid = lb.pid
    load = Load(harness.split_addr(listen), rate=300, streams=4).start()
    new = None
    try:
        time.sleep(1.5)
        mark = lb.log_mark()
        t0 = time.monotonic()
        lb.send_signal(signal.SIGUSR2)
        new = new_pid(lb, mark)
        handover_s = time.monotonic() - t0
        # The new process finds the announced node its session owns, and keeps it.
        ann_id = node.rsplit("/", 1)[1]
        lb.wait_for_log(rf"announce svc={ANNOUNCED} id={ann_id}: .*node already ours", 15,
                        since=mark)
        time.sleep(2.0)	# the new process serves under the same load
        load.stop()
        assert lb.wait(20) == 0, "the old process did not drain and exit"
    finally:
        load.stop()
        if new is None:
            pass
    try:
        assert new != old_pid
        text = lb.log()[mark:] if isinstance(lb.log(), str) else ""
        ts = lambda rx: time.mktime(time.strptime(re.search(rx, text).group(1)[:19],
                                                  "%Y-%m-%dT%H:%M:%S")) + \
            float("0." + re.search(rx, text).group(1)[20:23])
        log_ms = (ts(r"(\S+) info upgrade: pid \d+ serves now") -
                  ts(r"(\S+) info received SIGUSR2")) * 1000
        print(f"upgrade: {load.ok} short connections ok, {load.stream_bytes} stream bytes, "
              f"failures {load.failures}, SIGUSR2 to the new process serving "
              f"{log_ms:.0f} ms (seen by the test after {handover_s * 1000:.0f} ms)")
        assert load.failures == {"refused": 0, "reset": 0, "other": 0}, load.errors[:5]
        assert load.ok >= 900, f"only {load.ok} connections made"
        assert load.stream_bytes >= 4 * 100 * 1024

        # The same session, the same announced node: nothing flapped.
        doc = lb.admin_json("/services")
        assert doc["zookeeper"]["session_id"] == session
        assert doc["zookeeper"]["sessions"] == 1
        after = zk_client.exists(node)
        assert after is not None, "the announced node went away"
        assert (after.ctime, after.czxid, after.ephemeralOwner) == \
            (before.ctime, before.czxid, before.ephemeralOwner)
        text = lb.log()
        assert "registering again" not in text and "replaced a node" not in text
        # The new process follows ZooKeeper: a new instance is routed.
        b2 = backend("b2", "tag")
        zk_client.create(f"/services/{SVC}/b2", curator("b2", b2.port), ephemeral=True)
        wait_until(lambda: len(lb.services()[SVC]["instances"]) == 2, 10,
                   what="the new process to see b2")
    finally:
        if new:
            stop_pid(new)


def copy_binary(workdir):
    path = workdir / "zklb-under-test"
    shutil.copy2(zklb_binary(), path)
    return path


def start_copy(workdir, backend, binary):
    b1 = backend("b1", "echo")
    cfg = harness.zklb_config({SVC: harness.static_service([b1])}, workdir=workdir,
                              admin=f"unix:{workdir / 'admin.sock'}")
    lb = Zklb(cfg, workdir / "z", binary=binary)
    lb.start()
    return lb


def test_upgrade_to_a_binary_that_fails_keeps_serving(backend, workdir):
    binary = copy_binary(workdir)
    lb = start_copy(workdir, backend, binary)
    try:
        addr = lb.listen(SVC)
        s = harness.connect(addr)
        assert harness.echo_roundtrip(s, b"before\n") == b"before\n"
        fake = workdir / "fake"
        fake.write_text("#!/bin/sh\necho 'new zklb: cannot start' >&2\nexit 1\n")
        fake.chmod(0o755)
        os.replace(fake, binary)
        mark = lb.log_mark()
        lb.send_signal(signal.SIGUSR2)
        lb.wait_for_log(r"upgrade failed: .*serving on as before", 10, since=mark)
        assert lb.running()
        assert harness.echo_roundtrip(s, b"open one\n") == b"open one\n"
        s2 = harness.connect(addr)
        assert harness.echo_roundtrip(s2, b"new one\n") == b"new one\n"
        s.close()
        s2.close()
        assert lb.admin_get("/healthz")[0] == 200
        assert lb.stop() == 0
    finally:
        lb.cleanup()


def test_upgrade_with_a_config_that_no_longer_validates_keeps_serving(backend, zklb, workdir):
    b1 = backend("b1", "echo")
    lb = zklb(services={SVC: harness.static_service([b1])},
              admin=f"unix:{workdir / 'admin.sock'}")
    good = lb.config_path.read_text()
    lb.config_path.write_text(good + "bogus_key: 1\n")
    mark = lb.log_mark()
    lb.send_signal(signal.SIGUSR2)
    lb.wait_for_log(r"upgrade failed: .*serving on as before", 10, since=mark)
    lb.wait_for_log(r"bogus_key", 5, since=mark)
    assert lb.running()
    s = harness.connect(lb.listen(SVC))
    assert harness.echo_roundtrip(s) == b"ping\n"
    s.close()
    assert lb.admin_get("/healthz")[0] == 200
    # And a later upgrade with the file fixed goes through.
    lb.config_path.write_text(good)
    mark = lb.log_mark()
    lb.send_signal(signal.SIGUSR2)
    new = new_pid(lb, mark)
    try:
        assert lb.wait(10) == 0
        s = harness.connect(lb.listen(SVC))
        assert harness.echo_roundtrip(s) == b"ping\n"
        s.close()
    finally:
        stop_pid(new)


def test_systemd_follows_the_new_process(backend, zklb, workdir):
    """Type=notify: READY=1 with the main pid at start, and from the new
    process MAINPID=<its pid> after the upgrade, so systemd follows it."""
    b1 = backend("b1", "echo")
    path = str(workdir / "notify.sock")
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(path)
    sock.settimeout(15)
    try:
        lb = zklb(services={SVC: harness.static_service([b1])},
                  admin=f"unix:{workdir / 'admin.sock'}", env={"NOTIFY_SOCKET": path})
        assert sock.recv(256).decode() == f"MAINPID={lb.pid}\nREADY=1"
        mark = lb.log_mark()
        lb.send_signal(signal.SIGUSR2)
        new = new_pid(lb, mark)
        try:
            assert sock.recv(256).decode() == f"MAINPID={new}\nREADY=1"
            assert lb.wait(10) == 0
        finally:
            stop_pid(new)
    finally:
        sock.close()


def test_stop_signal_during_an_upgrade_abandons_it(backend, workdir):
    """A new binary that never says READY, and SIGTERM meanwhile: the old
    process kills it and drains as usual."""
    binary = copy_binary(workdir)
    lb = start_copy(workdir, backend, binary)
    try:
        pidfile = workdir / "stuck.pid"
        fake = workdir / "fake"
        fake.write_text(f"#!/bin/sh\necho $$ > {pidfile}\nexec sleep 30\n")
        fake.chmod(0o755)
        os.replace(fake, binary)
        mark = lb.log_mark()
        lb.send_signal(signal.SIGUSR2)
        wait_until(lambda: pidfile.exists() and pidfile.read_text().strip(), 10,
                   what="the stuck binary to start")
        stuck = int(pidfile.read_text())
        lb.send_signal(signal.SIGTERM)
        assert lb.wait(10) == 0
        lb.wait_for_log(rf"abandoning the upgrade to pid {stuck}", 1, since=mark)
        with pytest.raises(ProcessLookupError):
            os.kill(stuck, 0)
    finally:
        lb.cleanup()


UPGRADE_OK = re.compile(r"zklb upgrade: pid (\d+) serves; pid (\d+) drains and exits \(\d+ ms\)")


def test_upgrade_command_waits_for_the_new_process(backend, zklb, workdir):
    b1 = backend("b1", "echo")
    token = "up-" + os.urandom(8).hex()
    tf = workdir / "admin.token"
    tf.write_text(token + "\n")
    os.chmod(tf, 0o600)
    cfg = harness.zklb_config({SVC: harness.static_service([b1])}, workdir=workdir)
    cfg["admin"]["token_file"] = str(tf)
    lb = zklb(cfg)
    old = lb.pid
    s = harness.connect(lb.listen(SVC))
    assert harness.echo_roundtrip(s, b"before\n") == b"before\n"
    mark = lb.log_mark()
    r = harness.run_zklb(["upgrade", "-c", str(lb.config_path)], timeout=60)
    m = UPGRADE_OK.fullmatch(r.stdout.strip())
    assert r.returncode == 0 and m, (r.returncode, r.stdout, r.stderr)
    new, was = int(m.group(1)), int(m.group(2))
    try:
        assert was == old and new != old
        assert new_pid(lb, mark) == new
        lb.wait_for_log(r"upgrade \(asked for by \S+ \(token\)\): starting", 5, since=mark)
        # The old process drains: the open connection still works, then it exits.
        assert harness.echo_roundtrip(s, b"open one\n") == b"open one\n"
        s.close()
        assert lb.wait(10) == 0
        s = harness.connect(lb.listen(SVC))
        assert harness.echo_roundtrip(s, b"after\n") == b"after\n"
        s.close()
    finally:
        stop_pid(new)


def test_upgrade_command_reports_a_failed_start(backend, workdir):
    binary = copy_binary(workdir)
    lb = start_copy(workdir, backend, binary)     # admin on a unix socket
    try:
        fake = workdir / "fake"
        fake.write_text("#!/bin/sh\necho 'new zklb: cannot start' >&2\nexit 1\n")
        fake.chmod(0o755)
        os.replace(fake, binary)
        r = harness.run_zklb(["upgrade", "-c", str(lb.config_path)], timeout=60)
        assert r.returncode == 1, (r.stdout, r.stderr)
        assert re.fullmatch(rf"zklb upgrade: failed: .+; pid {lb.pid} serves on as before",
                            r.stderr.strip()), r.stderr
        assert lb.running()
        doc = lb.admin_json("/services")
        assert doc["pid"] == lb.pid and doc["upgrade"]["failures"] == 1
        assert doc["upgrade"]["last_failure"] in r.stderr
        assert lb.metrics().value("zklb_upgrade_failures_total") == 1
        s = harness.connect(lb.listen(SVC))
        assert harness.echo_roundtrip(s, b"still\n") == b"still\n"
        s.close()
        assert lb.stop() == 0
    finally:
        lb.cleanup()


def test_upgrade_command_refused_without_a_way_to_ask(backend, zklb, workdir):
    b1 = backend("b1", "echo")
    lb = zklb(services={SVC: harness.static_service([b1])})   # TCP admin, no token
    r = harness.run_zklb(["upgrade", "-c", str(lb.config_path)], timeout=30)
    assert r.returncode == 1
    assert re.fullmatch(rf"zklb upgrade: pid {lb.pid} did not start the upgrade: 403 state "
                        r"changes are served on the unix admin socket or with the admin token",
                        r.stderr.strip()), r.stderr
    assert lb.running() and lb.admin_json("/services")["upgrade"]["failures"] == 0
    # A file without an admin API: nothing to ask.
    off = workdir / "off.yaml"
    text = lb.config_path.read_text()
    cfg = harness.zklb_config({SVC: harness.static_service([b1])}, workdir=workdir)
    cfg["admin"] = {"listen": "off"}
    off.write_text(harness.to_yaml(cfg))
    r = harness.run_zklb(["upgrade", "-c", str(off)], timeout=30)
    assert r.returncode == 1 and "admin.listen is off" in r.stderr, r.stderr
    # Usage: --timeout belongs to upgrade, and must be a duration.
    assert harness.run_zklb(["upgrade", "-c", str(off), "--timeout", "soon"]).returncode == 2
    assert harness.run_zklb(["check", "-c", str(off), "--timeout", "5s"]).returncode == 2
    assert text == lb.config_path.read_text()
