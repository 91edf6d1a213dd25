"""The admin API: its unix-socket listener, and /metrics against the one table
of metric families (the table zklb's admin.c renders, the README lists).

The table is read from the metrics_table tool (tests/metrics_table.c), which
prints the same rows /metrics is built from.
"""

import http.client
import os
import socket
import stat
import time

from harness import ask_tag, parse_metrics, run_zklb, static_service

SVC = "web"


class UnixHTTPConnection(http.client.HTTPConnection):
    """http.client over a unix stream socket."""

    def __init__(self, path, timeout=5.0):
        super().__init__("localhost", timeout=timeout)
        self.unix_path = path

    def connect(self):
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        s.settimeout(self.timeout)
        s.connect(self.unix_path)
        self.sock = s


def unix_get(path, url, timeout=5.0):
    """GET url over the unix socket at path → (status, headers, body bytes)."""
    c = UnixHTTPConnection(str(path), timeout)
    try:
        c.request("GET", url)
        r = c.getresponse()
        return r.status, {k.lower(): v for k, v in r.getheaders()}, r.read()
    finally:
        c.close()


def wait_unix_ready(lb, path, timeout=15.0):
    """What the harness's wait_ready does on a TCP admin address, on a socket:
    GET /healthz until 200; fail at once if zklb exits."""
    deadline = time.monotonic() + timeout
    while True:
        if not lb.running():
            raise AssertionError(f"zklb exited with {lb.proc.wait()} during start-up\n"
                                 f"--- {lb.log_path} ---\n{lb.log_tail()}")
        try:
            if unix_get(path, "/healthz", timeout=1.0)[0] == 200:
                return
        except OSError:
            pass
        if time.monotonic() > deadline:
            raise AssertionError(f"no GET /healthz on {path} after {timeout}s\n{lb.log_tail()}")
        time.sleep(0.05)


def stale_socket(path):
    """A socket file nobody accepts on, as a crashed process leaves it."""
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.bind(str(path))
    s.close()
    assert stat.S_ISSOCK(os.stat(path).st_mode)


# --------------------------------------------------------------------------- unix listener


def test_admin_on_unix_socket(backend, zklb, tmp_path):
    b = backend("b1", "tag")
    path = tmp_path / "admin.sock"
    lb = zklb(services={SVC: static_service([b])}, admin=f"unix:{path}", start=False)
    check = run_zklb(["check", "-c", str(lb.config_path)])
    assert check.returncode == 0, check.stderr
    lb.start(wait=False)
    wait_unix_ready(lb, path)

    assert stat.S_ISSOCK(os.stat(path).st_mode)
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o660
    lb.wait_for_log(rf"admin API on unix:{path}$")

    assert ask_tag(lb.listen(SVC)) == "b1"
    status, headers, body = unix_get(path, "/metrics")
    assert status == 200 and headers["content-type"].startswith("text/plain")
    m = parse_metrics(body.decode())
    assert m.value("zklb_backend_connections_total", service=SVC) == 1
    status, _, body = unix_get(path, "/services")
    assert status == 200 and SVC.encode() in body
    assert unix_get(path, "/")[0] == 200

    assert lb.stop() == 0
    assert not path.exists(), "the admin socket outlives zklb"


def test_admin_unix_replaces_a_stale_socket(backend, zklb, tmp_path):
    path = tmp_path / "admin.sock"
    stale_socket(path)
    lb = zklb(services={SVC: static_service([backend("b1", "tag")])}, admin=f"unix:{path}",
              start=False)
    lb.start(wait=False)
    wait_unix_ready(lb, path)
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o660


def test_admin_unix_never_removes_a_regular_file(backend, zklb, tmp_path):
    path = tmp_path / "admin.sock"
    path.write_text("not a socket\n")
    lb = zklb(services={SVC: static_service([backend("b1", "tag")])}, admin=f"unix:{path}",
              start=False)
    lb.start(wait=False)
    assert lb.wait(15) == 1
    assert path.read_text() == "not a socket\n"
    assert f"admin: cannot listen on unix:{path}" in lb.log()


def test_admin_unix_leaves_a_live_socket_alone(backend, zklb, tmp_path):
    path = tmp_path / "admin.sock"
    first = zklb(services={SVC: static_service([backend("b1", "tag")])},
                 admin=f"unix:{path}", start=False)
    first.start(wait=False)
    wait_unix_ready(first, path)
    second = zklb(services={SVC: static_service([backend("b2", "tag")])},
                  admin=f"unix:{path}", start=False, name="second")
    second.start(wait=False)
    assert second.wait(15) == 1
    assert "admin: cannot listen on" in second.log()
    # The first one still answers on its socket, which is still there.
    assert unix_get(path, "/healthz")[0] == 200
