"""log.access: one line per client connection at its end, with the reason it
ended — client closed, backend closed, idle timeout, connect failed on every
try, every instance at its max_connections_per_instance, shutdown at the drain
deadline — in text and JSON (buffer_budget: test_limits.py; queue_timeout:
test_queue.py); SIGUSR1 reopens the
file after logrotate's rename; a logger that cannot write (a FIFO nobody
reads) never stalls the proxy, and the records it could not take are counted.
"""

import json
import os
import re
import signal
import socket

from harness import (closed_within, connect, echo_roundtrip, static_service, wait_until)

SVC = "web"
FIELD = re.compile(r'(\w+)=("(?:[^"\\]|\\.)*"|\S+)')


def parse_text(line):
    """A text line → its timestamp and a dict of its fields (quoted values decoded)."""
    ts, rest = line.split(" ", 1)
    out = {"ts": ts}
    for k, v in FIELD.findall(rest):
        out[k] = json.loads(v) if v.startswith('"') else v
    return out


def lines_of(path):
    if not os.path.exists(path):
        return []
    with open(path, "rb") as f:
        data = f.read().decode()
    return [l for l in data.split("\n") if l]


def wait_lines(path, n, timeout=5.0):
    wait_until(lambda: len(lines_of(path)) >= n, timeout, what=f"{n} access log lines in {path}")
    return lines_of(path)


def start(zklb, workdir, backends, fmt="text", **svc):
    path = str(workdir / "access.log")
    lb = zklb(services={SVC: static_service(backends, **svc)},
              log={"level": "info", "format": "text", "access": path, "access_format": fmt})
    return lb, path


def test_client_closes_text(backend, zklb, workdir):
    b = backend("b1", "echo")
    lb, path = start(zklb, workdir, [b])
    s = connect(lb.listen(SVC))
    assert echo_roundtrip(s, b"hello\n") == b"hello\n"
    s.close()
    (line,) = wait_lines(path, 1)
    f = parse_text(line)
    assert f["end"] == "client_closed", line
    assert f["svc"] == SVC
    assert f["backend"] == b.address
    assert f["id"] == b.address
    assert re.fullmatch(r"127\.0\.0\.1:\d+", f["client"]), line
    assert f["bytes_out"] == "6" and f["bytes_in"] == "6", line
    assert f["attempts"] == "1" and f["established"] == "true" and f["reused"] == "false"
    assert int(f["total_ms"]) >= int(f["connect_ms"])
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z", f["ts"]), line


def test_backend_closes_json(backend, zklb, workdir):
    b = backend("b1", "close")
    lb, path = start(zklb, workdir, [b], fmt="json")
    s = connect(lb.listen(SVC))
    assert closed_within(s, 3) is not None, "the backend's FIN did not reach the client"
    s.close()
    (line,) = wait_lines(path, 1)
    rec = json.loads(line)
    assert rec["end"] == "backend_closed", line
    assert rec["service"] == SVC and rec["backend"] == b.address
    assert rec["bytes_in"] == 0 and rec["bytes_out"] == 0
    assert rec["established"] is True and rec["attempts"] == 1


def test_idle_timeout(backend, zklb, workdir):
    b = backend("b1", "hold")
    lb, path = start(zklb, workdir, [b], idle_timeout="300ms")
    s = connect(lb.listen(SVC))
    s.sendall(b"x")
    assert closed_within(s, 3) is not None, "idle_timeout did not close the connection"
    s.close()
    (line,) = wait_lines(path, 1)
    f = parse_text(line)
    assert f["end"] == "idle_timeout", line
    assert f["bytes_out"] == "1"
    assert int(f["total_ms"]) >= 300


def test_connect_failed_on_every_try(closed_port, zklb, workdir):
    ports = [closed_port(), closed_port()]
    lb, path = start(zklb, workdir, ports, retries=1, fmt="json")
    s = connect(lb.listen(SVC))
    assert closed_within(s, 3) is not None
    s.close()
    (line,) = wait_lines(path, 1)
    rec = json.loads(line)
    assert rec["end"] == "connect_failed", line
    assert rec["attempts"] == 2 and rec["established"] is False
    assert rec["backend"] in (p.address for p in ports)


def test_instance_limit(backend, zklb, workdir):
    """Every instance full (max_connections_per_instance): instance_limit, not
    no_backend, so an SRE can tell a full pool from an empty one."""
    b = backend("b1", "hold")
    lb, path = start(zklb, workdir, [b], max_connections_per_instance=1)
    held = connect(lb.listen(SVC))
    b.wait_active(1)
    s = connect(lb.listen(SVC))
    assert closed_within(s, 3) is not None, "a client got a second slot"
    s.close()
    (line,) = wait_lines(path, 1)
    f = parse_text(line)
    assert f["end"] == "instance_limit", line
    assert f["attempts"] == "0" and f["established"] == "false"
    m = lb.metrics()
    assert m.value("zklb_connections_closed_total", reason="instance_limit") == 1
    assert (m.value("zklb_connections_closed_total", reason="no_backend") or 0) == 0
    held.close()


def test_shutdown_at_drain_deadline(backend, zklb, workdir):
    b = backend("b1", "hold")
    path = str(workdir / "access.log")
    lb = zklb(services={SVC: static_service([b])}, drain_timeout="500ms",
              log={"level": "info", "access": path})
    s = connect(lb.listen(SVC))
    s.sendall(b"abc")
    b.wait_active(1)
    lb.send_signal(signal.SIGTERM)
    assert lb.wait(5) == 0
    s.close()
    (line,) = lines_of(path)	# written before exit: no wait needed
    f = parse_text(line)
    assert f["end"] == "shutdown", line
    assert f["bytes_out"] == "3"


def test_sigusr1_reopens_after_rename(backend, zklb, workdir):
    b = backend("b1", "echo")
    lb, path = start(zklb, workdir, [b])
    addr = lb.listen(SVC)
    s = connect(addr)
    echo_roundtrip(s)
    s.close()
    wait_lines(path, 1)
    os.rename(path, path + ".1")
    # Until the signal, lines go on into the renamed file (the open descriptor).
    s = connect(addr)
    echo_roundtrip(s)
    s.close()
    wait_lines(path + ".1", 2)
    lb.send_signal(signal.SIGUSR1)
    wait_until(lambda: os.path.exists(path), 3, what="the access log to be reopened")
    s = connect(addr)
    echo_roundtrip(s, b"after\n")
    s.close()
    (line,) = wait_lines(path, 1)
    assert parse_text(line)["bytes_out"] == "6"
    assert len(lines_of(path + ".1")) == 2
    assert lb.metrics().value("zklb_access_log_lines_total") == 3


def test_logger_that_cannot_write_drops_and_counts(backend, zklb, workdir):
    """A FIFO whose reader never reads: the pipe fills, the logger blocks, the
    workers' ring fills, and from then on records are dropped and counted —
    while connections keep being served."""
    b = backend("b1", "echo")
    fifo = str(workdir / "access.fifo")
    os.mkfifo(fifo)
    reader = os.open(fifo, os.O_RDONLY | os.O_NONBLOCK)
    try:
        lb = zklb(services={SVC: static_service([b])}, workers=1,
                  log={"level": "info", "access": fifo})
        addr = lb.listen(SVC)
        # A 64 KiB pipe holds a few hundred lines and the ring 1024 records:
        # 2500 connections overflow both, bounded.
        for _ in range(2500):
            c = socket.create_connection(addr, timeout=5)
            c.close()
        # Every client's close reaches zklb a moment after the client returns.
        wait_until(lambda: lb.metrics().value("zklb_connections_closed_total") >= 2500, 10,
                   what="all 2500 relays closed")
        wait_until(lambda: lb.metrics().value("zklb_access_log_dropped_total") > 0, 10,
                   what="dropped access log records to be counted")
        s = connect(addr)
        assert echo_roundtrip(s, b"still serving\n") == b"still serving\n"
        s.close()
        m = lb.metrics()
        dropped = m.value("zklb_access_log_dropped_total")
        written = m.value("zklb_access_log_lines_total")
        assert written < 1000, f"{written} lines written into a pipe nobody reads"
        # Each connection's record is written, in the ring (1024), in the
        # logger's 64 KiB batch (lines of 200 bytes or more) or dropped.
        assert dropped >= 2500 - written - 1024 - 65536 // 200, (dropped, written)
    finally:
        os.close(reader)


def test_access_log_off_by_default(backend, zklb, workdir):
    b = backend("b1", "echo")
    lb = zklb(services={SVC: static_service([b])})
    s = connect(lb.listen(SVC))
    echo_roundtrip(s)
    s.close()
    assert lb.metrics().value("zklb_access_log_lines_total") == 0
    assert not list(workdir.rglob("access*"))
