"""Connection limits (issue 12): max_connections per service and for the whole
process, and the descriptors kept for the control plane.

  - 2x as many clients as a service's max_connections with the queue off
    (queue_timeout: 0s, the behaviour before the queue): the backend never holds
    more than the cap, the rest wait in the listen backlog (connected, not yet
    served) and are served as others close; the pause is counted (the queue,
    on by default since, is tested in test_queue.py);
  - the global max_connections spans services (clients beyond it queue, with
    the top-level queue_timeout);
  - with RLIMIT_NOFILE set low and clients holding every descriptor they can
    get, the control plane still works: the admin API answers, an active check
    keeps passing, and an instance registered in ZooKeeper meanwhile appears.

Every wait is bounded; the loops open at most a few hundred connections.

    tests/run tests/integration/test_limits.py
"""

import json
import socket
import time

import pytest

import harness
from harness import close_all, connect, free_addr, static_service, wait_until, zk_section

SVC = "web"


def ask(sock, timeout):
    """Send one byte, read the tag line, or None if nothing came within timeout
    (or the connection was closed or reset instead)."""
    sock.settimeout(timeout)
    try:
        sock.sendall(b"?")
        data = harness.recv_line(sock).decode().strip()
        return data or None
    except (socket.timeout, TimeoutError, ConnectionError):
        return None


def test_service_cap_holds_with_twice_the_clients(backend, zklb):
    cap = 5
    b = backend("b1", "tag")
    lb = zklb(services={SVC: static_service([b], max_connections=cap, queue_timeout="0s")})
    addr = lb.listen(SVC)
    clients = [connect(addr) for _ in range(2 * cap)]
    try:
        for s in clients:
            s.sendall(b"?")
        served = wait_until(lambda: b.active == cap and b.active, 5,
                            what=f"{cap} connections at the backend")
        # The others are connected (backlog) but get nothing: never more than the cap.
        deadline = time.monotonic() + 1.0
        while time.monotonic() < deadline:
            assert b.active <= cap, f"{b.active} upstream connections with max_connections {cap}"
            time.sleep(0.02)
        assert served == cap
        m = lb.metrics()
        assert m.value("zklb_service_connections_open", service=SVC) == cap
        assert m.value("zklb_service_accept_paused_total", service=SVC) >= 1
        # Find who was served; close them; the waiting ones are served in turn.
        answered, waiting = [], []
        for s in clients:
            s.settimeout(0.2)
            try:
                line = harness.recv_line(s)
                answered.append(s) if line.strip() == b"b1" else waiting.append(s)
            except (socket.timeout, TimeoutError):
                waiting.append(s)
        assert len(answered) == cap and len(waiting) == cap
        close_all(answered)
        for s in waiting:
            s.settimeout(5)
            assert harness.recv_line(s).strip() == b"b1"
        assert b.active <= cap
    finally:
        close_all(clients)
    wait_until(lambda: lb.metrics().value("zklb_service_connections_open", service=SVC) == 0, 5,
               what="open connections back to 0")
    lb.wait_for_log(r"at max_connections \(\d+ open for svc=web\): clients wait in the listen backlog")


def test_global_cap_spans_services(backend, zklb):
    a, b = backend("a", "tag"), backend("b", "tag")
    lb = zklb(services={"sa": static_service([a]), "sb": static_service([b])}, max_connections=3,
              queue_timeout="30s")
    held = harness.hold(lb.listen("sa"), 2)
    try:
        # One at a time: with a listener per worker (SO_REUSEPORT) two clients
        # connected together may be accepted in either order.
        first = connect(lb.listen("sb"))
        assert ask(first, 5) == "b"
        second = connect(lb.listen("sb"))
        assert ask(second, 0.5) is None, "a 4th connection was served with max_connections 3"
        close_all(held[:1])
        assert ask_rest(second) == "b"
        assert lb.metrics().value("zklb_service_queued_total", service="sb") == 1
        first.close()
        second.close()
    finally:
        close_all(held)


def ask_rest(sock, timeout=5):
    """The tag line of a connection whose byte was already sent."""
    sock.settimeout(timeout)
    return harness.recv_line(sock).decode().strip()


@pytest.mark.zookeeper
def test_control_plane_survives_descriptor_exhaustion(backend, zklb, shared_zookeeper, zk_path,
                                                      kazoo_client):
    b1 = backend("b1", "tag")
    b2 = backend("b2", "tag")
    checked = backend("checked", "echo")
    k = kazoo_client(shared_zookeeper.hosts)
    path = f"{zk_path}/services/zk"

    def curator(id_, port):
        return json.dumps({"name": "zk", "id": id_, "address": "127.0.0.1", "port": port,
                           "sslPort": None, "payload": None, "registrationTimeUTC": 1,
                           "serviceType": "DYNAMIC", "uriSpec": None}).encode()

    k.create(f"{path}/b1", curator("b1", b1.port), makepath=True)
    check = {"type": "tcp", "interval": "100ms", "timeout": "500ms", "rise": 1, "fall": 2}
    services = {
        SVC: static_service([b1]),
        "checked": static_service([checked], health={"check": check}),
        "zk": {"listen": free_addr(), "discovery": {"type": "curator", "path": path}},
    }
    lb = zklb(services=services, workers=1, nofile=256, zookeeper=zk_section(shared_zookeeper))
    wait_until(lambda: lb.instances("checked")[checked.address]["state"] == "healthy", 10,
               what="the checked instance healthy")
    mark = lb.log_mark()
    addr = lb.listen(SVC)
    clients = []
    try:
        # Take every descriptor clients can get (bounded: at most 400 tries).
        for _ in range(400):
            try:
                s = connect(addr, timeout=2)
            except OSError:
                break
            clients.append(s)
            if ask(s, 2) != "b1":
                break
        else:
            pytest.fail("400 clients served with RLIMIT_NOFILE 256: limit not applied?")
        lb.wait_for_log(r"kept for the control plane", timeout=5, since=mark)
        assert lb.metrics().value("zklb_accept_fd_reserve_refusals_total") >= 1
        # Clients are refused now...
        extra = connect(addr, timeout=2)
        assert ask(extra, 2) is None
        extra.close()
        # ...while the admin API answers, the check keeps passing,
        assert lb.admin_get("/healthz")[0] == 200
        checks_before = lb.metrics().value("zklb_service_check_failures_total", service="checked")
        time.sleep(0.5)   # five check intervals
        assert lb.instances("checked")[checked.address]["state"] == "healthy"
        assert lb.metrics().value("zklb_service_check_failures_total",
                                  service="checked") == checks_before
        # ...and ZooKeeper changes still arrive.
        k.create(f"{path}/b2", curator("b2", b2.port), makepath=True)
        wait_until(lambda: "b2" in {i["id"] for i in harness.instances_of(lb.services()["zk"])},
                   10, what="b2 discovered while clients hold the descriptors")
    finally:
        close_all(clients)
    wait_until(lambda: harness.ask_tag(addr, timeout=1.0) == "b1", 10,
               what="clients served again once descriptors are free")


def test_buffer_memory_budget_closes_what_it_cannot_hold(backend, zklb, workdir):
    """max_buffer_memory: slow readers beyond the budget are closed as buffer_budget
    (local_error before issue 14's end reasons) and counted; the buffers held never exceed it; zklb keeps serving; and once
    the slow readers are gone the gauge is back to 0."""
    b = backend("b1", "echo")
    log = workdir / "access.log"
    lb = zklb(services={"web": static_service([b], max_buffer="16k")},
              max_buffer_memory="64k", workers=1,
              log={"level": "info", "format": "text", "access": str(log)})
    addr = lb.listen("web")
    chunk = b"x" * 65536
    slow = []
    try:
        for _ in range(12):
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
            s.connect(harness.split_addr(addr))
            s.setblocking(False)
            # Echoed bytes pile up because this client never reads: send until
            # nothing has moved for 0.3 s (buffers full) or zklb closed it.
            deadline, quiet = time.monotonic() + 5, time.monotonic() + 0.3
            while time.monotonic() < min(deadline, quiet):
                try:
                    s.send(chunk)
                    quiet = time.monotonic() + 0.3
                except BlockingIOError:
                    time.sleep(0.01)
                except OSError:
                    break	# closed by zklb: over the budget
            slow.append(s)

        def refused():
            return lb.metrics().value("zklb_relay_buffer_refusals_total") or 0
        wait_until(lambda: refused() >= 1, 10, what="a relay closed over the budget")
        m = lb.metrics()
        assert m.value("zklb_relay_buffer_bytes") <= 65536
        assert m.value("zklb_connections_closed_total", reason="buffer_budget") >= 1
        assert (m.value("zklb_connections_closed_total", reason="local_error") or 0) == 0
        wait_until(lambda: log.exists() and "end=buffer_budget" in log.read_text(), 5,
                   what="an access log line ending buffer_budget")
        s = connect(addr)
        assert harness.echo_roundtrip(s, b"still serving\n") == b"still serving\n"
        s.close()
    finally:
        close_all(slow)
    wait_until(lambda: lb.metrics().value("zklb_relay_buffer_bytes") == 0, 10,
               what="every buffer given back")
