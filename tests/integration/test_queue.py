"""The queue beyond max_connections (issue 14: HAProxy's maxconn + timeout queue),
through the binary, with real sockets on loopback:

  - 2x more clients than a service's max_connections, two workers: nobody is
    refused, the extra ones are queued (/services, metrics, the status page), and as served
    clients close, the queued ones are served one by one in the order they
    arrived, whichever worker accepted them;
  - with clients that never close, the queued ones are closed after
    queue_timeout (never before it; the upper margin is generous), counted,
    logged, and each has an access log line ending `queue_timeout`;
  - a queued client that gives up is skipped when its turn comes: the slot
    goes to the next one, and its access log line says client_closed;
  - a drain closes queued clients at once (end reason shutdown), so they can
    reconnect to whoever listens next; so does a reload that gives the listen
    address to another service (its old queue would have nobody to serve it);
  - beyond queue_max queued clients, accepting pauses (the listen backlog) and
    that is counted; the backlog's clients are queued in turn as room frees.

Every wait is bounded; each test opens at most a dozen connections.

    tests/run tests/integration/test_queue.py
"""

import signal
import socket
import time

import harness
from harness import close_all, connect, static_service, wait_until

SVC = "web"


def queued(lb):
    return lb.metrics().value("zklb_service_queued", service=SVC)


def answered(sock, timeout):
    """The tag line of a connection whose byte was sent, or None if none came in time."""
    sock.settimeout(timeout)
    try:
        return harness.recv_line(sock).decode().strip() or None
    except (socket.timeout, TimeoutError):
        return None


def nothing_yet(sock):
    """True when sock has nothing to read and is still open (not served, not closed)."""
    sock.setblocking(False)
    try:
        sock.recv(1, socket.MSG_PEEK)
        return False
    except BlockingIOError:
        return True
    finally:
        sock.setblocking(True)


def closed_by_peer(sock, timeout):
    """Wait up to timeout for zklb to close sock without a byte; True if it did."""
    sock.settimeout(timeout)
    try:
        return sock.recv(1) == b""
    except (ConnectionResetError, BrokenPipeError):
        return True
    except (socket.timeout, TimeoutError):
        return False


def test_twice_the_cap_served_in_arrival_order(backend, zklb):
    cap = 4
    b = backend("b1", "tag")
    lb = zklb(services={SVC: static_service([b], max_connections=cap, queue_timeout="30s")},
              workers=2)
    addr = lb.listen(SVC)
    served, waiting = [], []
    try:
        for _ in range(cap):
            s = connect(addr)
            s.sendall(b"?")
            assert answered(s, 5) == "b1"
            served.append(s)
        # One at a time, each seen queued before the next connects: the arrival order.
        for i in range(cap):
            s = connect(addr)
            s.sendall(b"?")
            waiting.append(s)
            wait_until(lambda: queued(lb) == i + 1, 5, what=f"{i + 1} clients queued")
        assert all(nothing_yet(s) for s in waiting), "a client beyond max_connections was served"
        assert b.active == cap
        svc = lb.services()[SVC]
        assert svc["queued"] == cap and svc["connections_open"] == cap, svc
        page = {t["title"]: t for t in lb.admin_json("/status")["tables"]}[f"service {SVC}"]
        assert [cap_fact for cap_fact in page["facts"] if cap_fact[0] == "queued"] == \
            [["queued", f"{cap} now, 0 timed out", "warn"]], page["facts"]
        m = lb.metrics()
        assert m.value("zklb_service_queued_total", service=SVC) == cap
        assert m.value("zklb_service_connections_open", service=SVC) == cap
        lb.wait_for_log(r"at max_connections \(\d+ open for svc=web\): clients queue for a slot")
        # Each close frees one slot: exactly the longest-waiting client gets it.
        for i, s in enumerate(waiting):
            served.pop(0).close()
            assert answered(s, 5) == "b1", f"queued client {i} not served after a close"
            assert all(nothing_yet(t) for t in waiting[i + 1:]), \
                f"a client queued after {i} was served before it"
            assert b.active <= cap
        m = lb.metrics()
        assert m.value("zklb_service_queued", service=SVC) == 0
        assert (m.value("zklb_service_queue_timeouts_total", service=SVC) or 0) == 0
        assert (m.value("zklb_connections_closed_total", reason="queue_timeout") or 0) == 0
    finally:
        close_all(served + waiting)
    wait_until(lambda: lb.metrics().value("zklb_service_connections_open", service=SVC) == 0, 5,
               what="open connections back to 0")


def test_queued_clients_closed_after_queue_timeout(backend, zklb, workdir):
    cap, late, timeout = 2, 3, 1.0
    b = backend("b1", "hold")
    log = str(workdir / "access.log")
    lb = zklb(services={SVC: static_service([b], max_connections=cap, queue_timeout="1s")},
              log={"level": "info", "format": "text", "access": log})
    addr = lb.listen(SVC)
    held = [connect(addr) for _ in range(cap)]
    try:
        b.wait_active(cap)
        started = time.monotonic()
        queued_ones = [connect(addr) for _ in range(late)]
        wait_until(lambda: queued(lb) == late, 5, what=f"{late} clients queued")
        for s in queued_ones:
            # Generous upper margin; the lower bound is the contract: not before queue_timeout.
            assert closed_by_peer(s, timeout + 10), "a queued client was never closed"
            waited = time.monotonic() - started
            assert waited >= timeout - 0.05, f"closed after {waited:.3f}s, before queue_timeout"
        m = lb.metrics()
        assert m.value("zklb_service_queue_timeouts_total", service=SVC) == late
        assert m.value("zklb_connections_closed_total", reason="queue_timeout") == late
        assert m.value("zklb_service_queued", service=SVC) == 0
        assert lb.services()[SVC]["queue_timeouts"] == late
        lb.wait_for_log(r"svc=web closed \d+ client\(s\) queued for queue_timeout 1s")
        # The held connections were not touched.
        assert b.active == cap and all(nothing_yet(s) for s in held)
        lines = []
        wait_until(lambda: len(lines_ending(log, "queue_timeout", lines)) == late, 5,
                   what="an access log line per queue timeout")
    finally:
        close_all(held)


def lines_ending(path, reason, out):
    try:
        with open(path) as f:
            out[:] = [line for line in f if line.rstrip().endswith(f"end={reason}")]
    except FileNotFoundError:
        out[:] = []
    return out


def test_full_queue_falls_back_to_the_backlog(backend, zklb):
    b = backend("b1", "tag")
    lb = zklb(services={SVC: static_service([b], max_connections=1, queue_max=2,
                                            queue_timeout="30s")}, workers=1)
    addr = lb.listen(SVC)
    first = connect(addr)
    first.sendall(b"?")
    clients = [first]
    try:
        assert answered(first, 5) == "b1"
        for i in range(2):
            s = connect(addr)
            s.sendall(b"?")
            clients.append(s)
            wait_until(lambda: queued(lb) == i + 1, 5, what=f"{i + 1} queued")
        extra = connect(addr)    # completes in the kernel's backlog
        extra.sendall(b"?")
        clients.append(extra)
        wait_until(lambda: lb.metrics().value("zklb_service_queue_full_total", service=SVC) >= 1,
                   5, what="the full queue counted")
        assert queued(lb) == 2 and nothing_yet(extra)
        # Room frees one slot at a time: the queued ones first, then the backlog's.
        for s in clients[1:]:
            clients[0].close()
            clients.pop(0)
            assert answered(s, 5) == "b1"
    finally:
        close_all(clients)


def one_held_one_queued(backend, zklb, workdir, queue_timeout):
    """zklb with max_connections 1 and an access log: one client served (held
    by the backend), one queued. → (zklb, access log path, held, queued)."""
    b = backend("b1", "hold")
    log = workdir / "access.log"
    lb = zklb(services={SVC: static_service([b], max_connections=1, queue_timeout=queue_timeout)},
              drain_timeout="30s", log={"level": "info", "format": "text", "access": str(log)})
    addr = lb.listen(SVC)
    held = connect(addr)
    b.wait_active(1)
    waiting = connect(addr)
    try:
        wait_until(lambda: queued(lb) == 1, 5, what="a client queued")
    except BaseException:
        close_all([held, waiting])
        raise
    return lb, log, held, waiting


def test_drain_closes_queued_clients(backend, zklb, workdir):
    lb, log, held, waiting = one_held_one_queued(backend, zklb, workdir, "30s")
    try:
        lb.send_signal(signal.SIGTERM)
        # At the drain's start, long before its deadline (30s): the open one stays.
        assert closed_by_peer(waiting, 10), "a queued client outlived the drain's start"
        assert lb.running() and nothing_yet(held)
        held.close()
        assert lb.wait(10) == 0
        ends = [line.rsplit("end=", 1)[1].strip() for line in log.read_text().splitlines()]
        assert sorted(ends) == ["client_closed", "shutdown"], ends
    finally:
        close_all([held, waiting])


def test_a_client_that_gave_up_passes_its_turn(backend, zklb, workdir):
    b = backend("b1", "tag")
    log = workdir / "access.log"
    lb = zklb(services={SVC: static_service([b], max_connections=1, queue_timeout="30s")},
              log={"level": "info", "format": "text", "access": str(log)})
    addr = lb.listen(SVC)
    first = connect(addr)
    first.sendall(b"?")
    assert answered(first, 5) == "b1"
    gone, next_one = connect(addr), None
    try:
        wait_until(lambda: queued(lb) == 1, 5, what="a client queued")
        next_one = connect(addr)
        next_one.sendall(b"?")
        wait_until(lambda: queued(lb) == 2, 5, what="two clients queued")
        gone.close()                  # gives up while queued
        first.close()                 # its turn comes
        assert answered(next_one, 5) == "b1"
        assert b.accepts == 2, "the backend saw a connection for the client that left"
        # The first client's own line says client_closed too: wait for the one with no attempt.
        def gave_up():
            return [line for line in log.read_text().splitlines()
                    if "end=client_closed" in line and " attempts=0 " in line]
        wait_until(lambda: len(gave_up()) == 1, 5, what="its access log line")
        assert "established=false" in gave_up()[0]
    finally:
        close_all([first, gone] + ([next_one] if next_one else []))


def test_a_reload_that_gives_the_address_to_another_service_closes_its_queue(backend, zklb,
                                                                          workdir):
    """The listen address passes to a service of another name (a rename): the old
    service's queue would be served and expired by nobody, so its clients are
    closed at the reload (end reason shutdown), long before queue_timeout."""
    lb, log, held, waiting = one_held_one_queued(backend, zklb, workdir, "60s")
    try:
        cfg = dict(lb.config)
        cfg["services"] = {"renamed": dict(cfg["services"][SVC])}
        lb.reload(cfg)
        assert closed_by_peer(waiting, 10), "a queued client of the old service was stranded"
        assert lb.running() and nothing_yet(held)
        wait_until(lambda: "end=shutdown" in log.read_text(), 5, what="its access log line")
    finally:
        close_all([held, waiting])
