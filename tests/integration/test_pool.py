"""The upstream connection pool (services.X.pool, docs/design.md), against real backends:
Nginx (HTTP/1.1 keep-alive), redis-server and memcached, plus a tiny threaded HTTP
server whose answers can be late.

What is checked:
  * economy: many short client connections (connect, one request, close) ride on a
    few upstream connections with pool.reuse, counted at the backend itself and by
    zklb's opened/reused counters;
  * the pool's invariant, in every test: no client ever receives a byte meant for
    another client. Every client asks for something naming itself (/r/<i>, key k<i>)
    and checks that its answer is exactly that, with nothing before or after it;
  * adversarial clients (leaving mid-response, mid-request, after pipelining) and
    backends (late answers, closing idle keep-alive connections, Connection: close,
    refusing or dropping prewarmed connections), and pool.idle_timeout / prewarm.
"""

import random
import socket
import time
from concurrent.futures import ThreadPoolExecutor

import pytest

from harness import (Memcached, NginxHTTP, RedisServer, SockReader, TinyHTTP, connect,
                     http_request, instances_of, resp_command, sha256, static_service,
                     wait_until)

SVC = "web"
OPENED = "zklb_upstream_connections_opened_total"
REUSED = "zklb_upstream_connections_reused_total"
IDLE = "zklb_upstream_idle_connections"
DISCARDED = "zklb_upstream_connections_discarded_total"
NOT_REUSABLE = "zklb_upstream_not_reusable_total"
CONNECT_FAILURES = "zklb_backend_connect_failures_total"


# ---------------------------------------------------------------------------
# Fixtures and helpers
# ---------------------------------------------------------------------------


@pytest.fixture
def server(tmp_path):
    """server(NginxHTTP | RedisServer | Memcached, **kw) → started, stopped at teardown."""
    made = []

    def make(cls, **kw):
        if not cls.available():
            pytest.fail(f"{cls.binary} is not installed (Debian: nginx-light, "
                        f"redis-server, memcached)")
        s = cls(tmp_path / f"{cls.kind}{len(made)}", **kw)
        made.append(s)
        return s.start()

    yield make
    for s in made:
        s.stop()


@pytest.fixture
def tiny_http():
    made = []

    def make():
        t = TinyHTTP().start()
        made.append(t)
        return t

    yield make
    for t in made:
        t.stop()


def pooled(backends, reuse="http1", **pool):
    """A static service with pool.reuse = reuse and other pool keys."""
    return static_service(backends, pool={"reuse": reuse, **pool})


def start_lb(zklb, service, **top):
    """zklb with one service SVC; a short drain so that teardown is quick."""
    return zklb(services={SVC: service}, drain_timeout="1s", **top)


def metric(lb, name, **labels):
    return lb.metrics().value(name, **labels) or 0


def upstream_counts(lb):
    m = lb.metrics()
    return {k: int(m.value(n, service=SVC) or 0)
            for k, n in (("opened", OPENED), ("reused", REUSED), ("idle", IDLE))}


def wait_idle(lb, n=1, timeout=3):
    """Wait until at least n upstream connections sit in the pool (a client's close
    reaches zklb a moment after the client returns)."""
    return wait_until(lambda: upstream_counts(lb)["idle"] >= n, timeout,
                      what=f"{n} idle pooled connection(s)")


def run_clients(fn, ids, concurrency=4):
    """Run fn(i) for every i, `concurrency` at a time; → list of problems
    (fn returns None when all is well, else a description; exceptions count)."""
    def guarded(i):
        try:
            return fn(i)
        except Exception as e:  # noqa: BLE001 - a client failure is a finding
            return f"client {i}: {e!r}"

    with ThreadPoolExecutor(max_workers=concurrency) as ex:
        return [p for p in ex.map(guarded, ids) if p]


def new_socket(addr, rcvbuf=None, timeout=5.0):
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    if rcvbuf:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
    s.settimeout(timeout)
    s.connect(addr)
    return s


def check_http(rd, i, big_sha=None):
    """Read one response to GET /r/<i> (or /big/<i> when big_sha) and check it is
    exactly this client's; → None or a problem."""
    status, headers, body = rd.http_response()
    if status != 200:
        return f"client {i}: status {status}, body {body[:200]!r}"
    if big_sha is None:
        if body != f"r{i}\n".encode():
            return f"client {i}: got body {body[:200]!r}"
    else:
        if headers.get("x-client") != str(i):
            return f"client {i}: response for X-Client {headers.get('x-client')!r}"
        if sha256(body) != big_sha:
            return f"client {i}: large body differs ({len(body)} bytes)"
    return None


def http_client(addr, i, big_sha=None):
    """One short client: connect, one keep-alive GET, read by Content-Length, check
    that nothing else came, close (client first)."""
    s = connect(addr)
    try:
        rd = SockReader(s)
        s.sendall(http_request(f"/big/{i}" if big_sha else f"/r/{i}"))
        problem = check_http(rd, i, big_sha)
        if problem:
            return problem
        extra = rd.extra()
        if extra:
            return f"client {i}: {len(extra)} bytes after its response: {extra[:100]!r}"
    finally:
        s.close()
    return None


def clean_http_clients(addr, ids, concurrency=1):
    """Well-behaved clients after an adversarial one: every byte must be theirs."""
    problems = run_clients(lambda i: http_client(addr, i), ids, concurrency)
    assert not problems, problems[:10]


def redis_client(addr, i):
    s = connect(addr)
    try:
        rd = SockReader(s)
        val = f"v{i}-{random.getrandbits(32)}".encode()
        s.sendall(resp_command("SET", f"k{i}", val))
        if (r := rd.resp()) != "OK":
            return f"client {i}: SET → {r!r}"
        s.sendall(resp_command("GET", f"k{i}"))
        if (r := rd.resp()) != val:
            return f"client {i}: GET k{i} → {r!r}, want {val!r}"
        if extra := rd.extra():
            return f"client {i}: {len(extra)} extra bytes: {extra[:100]!r}"
    finally:
        s.close()
    return None


def memcached_client(addr, i):
    s = connect(addr)
    try:
        rd = SockReader(s)
        val = f"v{i}-{random.getrandbits(32)}".encode()
        s.sendall(b"set k%d 0 0 %d\r\n%s\r\n" % (i, len(val), val))
        if (r := rd.line()) != b"STORED\r\n":
            return f"client {i}: set → {r!r}"
        s.sendall(b"get k%d\r\n" % i)
        want = [b"VALUE k%d 0 %d\r\n" % (i, len(val)), val + b"\r\n", b"END\r\n"]
        got = [rd.line() for _ in range(3)]
        if got != want:
            return f"client {i}: get → {got!r}, want {want!r}"
        if extra := rd.extra():
            return f"client {i}: {len(extra)} extra bytes: {extra[:100]!r}"
    finally:
        s.close()
    return None


# ---------------------------------------------------------------------------
# Economy: many short clients, few upstream connections
# ---------------------------------------------------------------------------


def test_http1_short_clients_share_few_upstream_connections(server, zklb):
    """1,000 short clients (one keep-alive GET each, client closes) through
    reuse: http1 cause at most 5 % as many accepts at Nginx, and every client gets
    exactly its own response (small ones, and one in ten a 256 KiB file)."""
    ng = server(NginxHTTP, big_size=256 << 10)
    lb = start_lb(zklb, pooled([ng], "http1"))
    addr = lb.listen(SVC)
    n = 1000

    def client(i):
        return http_client(addr, i, ng.big_sha if i % 10 == 0 else None)

    problems = run_clients(client, range(n), concurrency=4)
    assert not problems, problems[:10]
    # The last clients' closes reach zklb a moment after they return; until then
    # the idle gauge still grows.
    wait_until(lambda: metric(lb, "zklb_backend_connections_active") == 0, 3,
               what="every client relay closed")

    st = ng.stats()
    up = upstream_counts(lb)
    assert st["accepts"] <= n // 20, f"{st['accepts']} upstream accepts for {n} clients"
    assert up["opened"] == st["accepts"], (up, st)
    assert up["opened"] + up["reused"] == n, up
    assert st["requests"] == n
    # Nginx's own view: every request once, on few connections.
    log = wait_until(lambda: (e := ng.log_entries()) and len(e) >= n and e, 5,
                     what="Nginx access log")
    assert sorted(uri for _, _, uri, _ in log) == sorted(
        f"/big/{i}" if i % 10 == 0 else f"/r/{i}" for i in range(n))
    assert {status for *_, status in log} == {200}
    assert len({c for c, *_ in log}) == st["accepts"]
    # /services agrees with /metrics.
    inst = instances_of(lb.services()[SVC])[0]
    assert inst["upstream_opened"] == up["opened"] and inst["upstream_reused"] == up["reused"]
    assert inst["idle"] == up["idle"] >= 1


def test_redis_short_clients_share_few_upstream_connections(server, zklb):
    """Short redis clients (SET k<i>, GET k<i>, close) through reuse: redis."""
    rs = server(RedisServer)
    lb = start_lb(zklb, pooled([rs], "redis"))
    addr = lb.listen(SVC)
    n = 500
    problems = run_clients(lambda i: redis_client(addr, i), range(n), concurrency=4)
    assert not problems, problems[:10]
    accepts = rs.accepts
    up = upstream_counts(lb)
    assert accepts <= n // 20, f"{accepts} upstream accepts for {n} clients"
    assert up["opened"] == accepts and up["opened"] + up["reused"] == n, up


def test_redis_select_pins_the_connection(server, zklb):
    """SELECT leaves state on the connection: it is closed, never pooled, and no
    later client finds itself in database 1."""
    rs = server(RedisServer)
    lb = start_lb(zklb, pooled([rs], "redis"), workers=1)
    addr = lb.listen(SVC)
    assert not run_clients(lambda i: redis_client(addr, i), range(5), 1)
    wait_idle(lb)
    pinned0 = metric(lb, NOT_REUSABLE, verdict="pinned")
    reused0 = upstream_counts(lb)["reused"]

    s = connect(addr)
    rd = SockReader(s)
    s.sendall(resp_command("SELECT", 1) + resp_command("SET", "pinned", "db1"))
    assert rd.resp() == "OK" and rd.resp() == "OK"
    s.close()
    wait_until(lambda: metric(lb, NOT_REUSABLE, verdict="pinned") == pinned0 + 1, 5,
               what="not_reusable{verdict=pinned} + 1")
    # The connection that selected db 1 is gone at the server.
    wait_until(lambda: b"db=1 " not in client_list(rs), 5, what="no db=1 client at redis")
    assert upstream_counts(lb)["reused"] == reused0 + 1  # the pinned client reused one

    for i in range(20):
        s = connect(addr)
        rd = SockReader(s)
        s.sendall(resp_command("GET", "pinned"))
        assert rd.resp() is None, "a later client inherited SELECT 1"
        s.close()
    assert not run_clients(lambda i: redis_client(addr, i), range(100, 120), 1)


def client_list(rs):
    s = connect(rs.addr)
    rs._own_queries += 1
    try:
        s.sendall(resp_command("CLIENT", "LIST"))
        return SockReader(s).resp()
    finally:
        s.close()


def test_memcached_short_clients_share_few_upstream_connections(server, zklb):
    mc = server(Memcached)
    lb = start_lb(zklb, pooled([mc], "memcached"))
    addr = lb.listen(SVC)
    n = 500
    problems = run_clients(lambda i: memcached_client(addr, i), range(n), concurrency=4)
    assert not problems, problems[:10]
    accepts = mc.accepts
    up = upstream_counts(lb)
    assert accepts <= n // 20, f"{accepts} upstream accepts for {n} clients"
    assert up["opened"] == accepts and up["opened"] + up["reused"] == n, up


# ---------------------------------------------------------------------------
# Adversarial clients. One worker, so that the next client is always offered
# the connection the previous one left behind.
# ---------------------------------------------------------------------------


def test_http1_client_leaves_mid_response(server, zklb):
    """A client that reads a few bytes of a 4 MiB response and closes: what is left
    of that response never reaches the next clients."""
    ng = server(NginxHTTP, big_size=4 << 20)
    lb = start_lb(zklb, pooled([ng], "http1"), workers=1)
    addr = lb.listen(SVC)
    clean_http_clients(addr, range(3))
    partial0 = metric(lb, NOT_REUSABLE, verdict="partial")
    for k in range(5):
        s = new_socket(addr, rcvbuf=4096)
        s.sendall(http_request(f"/big/{k}"))
        assert s.recv(100).startswith(b"HTTP/1.1 200")
        s.close()
        clean_http_clients(addr, range(100 * k + 10, 100 * k + 20))
    assert metric(lb, NOT_REUSABLE, verdict="partial") > partial0
    # And the large file still comes through whole.
    assert http_client(addr, 7, ng.big_sha) is None


def test_http1_client_leaves_mid_request(server, zklb):
    """Half a request, then close: that upstream connection is never given to
    the next clients, who get exactly their own answers."""
    ng = server(NginxHTTP)
    lb = start_lb(zklb, pooled([ng], "http1"), workers=1)
    addr = lb.listen(SVC)
    clean_http_clients(addr, range(3))
    for half in (b"GET /r/1 HTTP/1.1\r\nHost: x\r\n", b"GE", b"GET /r/1 HTT"):
        s = connect(addr)
        s.sendall(half)
        time.sleep(0.05)
        s.close()
        clean_http_clients(addr, range(10, 15))


def test_http1_pipelined_clients(server, zklb):
    """Pipelined requests: all answers read then close (the connection is reusable);
    only some read then close (whatever is left never reaches anyone else)."""
    ng = server(NginxHTTP, big_size=256 << 10)
    lb = start_lb(zklb, pooled([ng], "http1"), workers=1)
    addr = lb.listen(SVC)
    clean_http_clients(addr, range(2))

    # All answers read.
    s = connect(addr)
    rd = SockReader(s)
    s.sendall(b"".join(http_request(f"/r/{i}") for i in (21, 22, 23)))
    for i in (21, 22, 23):
        assert check_http(rd, i) is None
    reused0 = upstream_counts(lb)["reused"]
    s.close()
    wait_idle(lb)
    clean_http_clients(addr, [30])
    assert upstream_counts(lb)["reused"] == reused0 + 1

    # Only the first answer read: small answers, a large one in the middle, or
    # large ones that do not fit in the client's window.
    for batch in ([41, 42, 43], [51, -52, 53], [-61, 62, -63]):
        s = new_socket(addr, rcvbuf=8192)
        rd = SockReader(s)
        s.sendall(b"".join(http_request(f"/big/{-i}" if i < 0 else f"/r/{i}")
                           for i in batch))
        if batch[0] > 0:
            assert check_http(rd, batch[0]) is None
        else:
            assert s.recv(64).startswith(b"HTTP/1.1 200")
        s.close()
        clean_http_clients(addr, range(70, 80))


def test_late_answer_connection_not_given_to_next_client(tiny_http, zklb):
    """A client asks a slow backend and closes before the answer: its upstream
    connection owes an answer, so the next client must get another connection; when
    the late answer comes it goes nowhere else, and later clients get only their
    own bytes."""
    be = tiny_http()
    lb = start_lb(zklb, pooled([be], "http1"), workers=1)
    addr = lb.listen(SVC)
    clean_http_clients(addr, [1])
    wait_idle(lb)
    assert be.accepts == 1

    s = connect(addr)
    s.sendall(http_request("/slow/500/2"))
    wait_until(lambda: "/slow/500/2" in be.requests, 2, what="slow request at the backend")
    s.close()
    time.sleep(0.05)
    t0 = time.monotonic()
    clean_http_clients(addr, [3])
    assert time.monotonic() - t0 < 0.4, "the next client waited for the late answer"
    assert be.accepts == 2, "the next client was given the connection owing an answer"

    time.sleep(0.7)  # the late answer arrives meanwhile
    clean_http_clients(addr, range(4, 30))
    assert be.accepts <= 3


def test_mixed_adversarial_clients_concurrently(server, zklb):
    """Well-behaved and misbehaving clients at once (two workers): every
    well-behaved one gets exactly its own answer."""
    ng = server(NginxHTTP, big_size=1 << 20)
    lb = start_lb(zklb, pooled([ng], "http1"), workers=2)
    addr = lb.listen(SVC)
    rng = random.Random(6)
    plan = [rng.choice(["ok", "ok", "ok", "big", "abort_response", "abort_request",
                        "pipeline_some"]) for _ in range(300)]

    def client(i):
        kind = plan[i]
        if kind == "ok":
            return http_client(addr, i)
        if kind == "big":
            return http_client(addr, i, ng.big_sha)
        s = new_socket(addr, rcvbuf=4096)
        try:
            if kind == "abort_response":
                s.sendall(http_request(f"/big/{i}"))
                s.recv(10)
            elif kind == "abort_request":
                s.sendall(http_request(f"/r/{i}")[:20])
            else:
                rd = SockReader(s)
                s.sendall(http_request(f"/r/{i}") + http_request(f"/big/{i}") +
                          http_request(f"/r/{i}"))
                return check_http(rd, i)
        finally:
            s.close()
        return None

    problems = run_clients(client, range(len(plan)), concurrency=8)
    assert not problems, problems[:10]
    clean_http_clients(addr, range(1000, 1050), concurrency=4)


@pytest.mark.parametrize("proto", ["redis", "memcached"])
def test_leftover_reply_bytes_never_reach_next_client(proto, server, zklb):
    """redis / memcached: a client reads a few bytes of a large value and closes;
    pipelines two GETs of it and leaves after a few bytes; leaves mid-command.
    Later clients see only their own replies."""
    if proto == "redis":
        be = server(RedisServer)
        big = random.Random(1).randbytes(2 << 20)
        direct = connect(be.addr)
        direct.sendall(resp_command("SET", "big", big))
        assert SockReader(direct).resp() == "OK"
        get_big = resp_command("GET", "big")
        half = resp_command("SET", "x", "y")[:9]
        clean = redis_client
    else:
        be = server(Memcached)
        big = random.Random(1).randbytes(768 << 10)  # items are at most 1 MiB
        direct = connect(be.addr)
        direct.sendall(b"set big 0 0 %d\r\n%s\r\n" % (len(big), big))
        assert SockReader(direct).line() == b"STORED\r\n"
        get_big = b"get big\r\n"
        half = b"set x 0 0 5\r\nab"
        clean = memcached_client
    direct.close()
    lb = start_lb(zklb, pooled([be], proto), workers=1)
    addr = lb.listen(SVC)

    def clean_clients(ids):
        problems = run_clients(lambda i: clean(addr, i), ids, 1)
        assert not problems, problems[:10]

    clean_clients(range(3))
    for k in range(3):
        s = new_socket(addr, rcvbuf=4096)
        s.sendall(get_big)
        assert s.recv(16)
        s.close()
        clean_clients(range(10 * k + 10, 10 * k + 20))
    s = new_socket(addr, rcvbuf=4096)
    s.sendall(get_big + get_big)
    assert s.recv(16)
    s.close()
    clean_clients(range(50, 60))
    s = connect(addr)
    s.sendall(half)
    time.sleep(0.05)
    s.close()
    clean_clients(range(60, 70))


HALF_REQUESTS = {
    "http1": (NginxHTTP, b"GET /r/1 HTTP/1.1\r\nHost: x\r\n"),
    "redis": (RedisServer, b"*3\r\n$3\r\nSET\r\n$1\r\nx"),
    "memcached": (Memcached, b"set x 0 0 5\r\nab"),
}


@pytest.mark.parametrize("proto", list(HALF_REQUESTS))
def test_half_request_then_close_reaches_backend(proto, server, zklb):
    """A client sends half a request and closes: no reply can be owed, so the
    upstream connection must be closed (not held until idle_timeout) and the
    backend must see that promptly."""
    cls, half = HALF_REQUESTS[proto]
    be = server(cls)
    lb = start_lb(zklb, pooled([be], proto), workers=1)
    addr = lb.listen(SVC)
    s = connect(addr)
    s.sendall(half)
    wait_until(lambda: be.active == 1, 2, what="the upstream connection")
    s.close()
    wait_until(lambda: be.active == 0, 2, what=f"{proto} sees the upstream closed")
    # zklb passed the FIN on; the backend's FIN back then ends the relay.
    wait_until(lambda: metric(lb, "zklb_backend_connections_active", service=SVC) == 0, 2,
               what="the relay closed")


# ---------------------------------------------------------------------------
# Backends closing pooled connections; pool.idle_timeout
# ---------------------------------------------------------------------------


def test_backend_closes_idle_keepalive_connections(server, zklb):
    """Nginx keepalive_timeout 1s closes pooled connections: zklb drops them at
    once (closed_while_idle), and clients after the pause see no error."""
    ng = server(NginxHTTP, keepalive_timeout="1s")
    lb = start_lb(zklb, pooled([ng], "http1"), workers=1)
    addr = lb.listen(SVC)
    clean_http_clients(addr, range(5), concurrency=2)
    wait_idle(lb)
    idle = upstream_counts(lb)["idle"]
    closed0 = metric(lb, DISCARDED, reason="closed_while_idle")
    time.sleep(1.3)
    wait_until(lambda: upstream_counts(lb)["idle"] == 0, 3, what="idle gauge back to 0")
    assert metric(lb, DISCARDED, reason="closed_while_idle") >= closed0 + idle
    assert ng.active == 0
    clean_http_clients(addr, range(10, 40), concurrency=2)


def test_backend_connection_close_is_not_pooled(server, zklb):
    """Nginx keepalive_requests 3: every third answer says Connection: close and
    the backend closes; zklb does not pool that connection."""
    ng = server(NginxHTTP, keepalive_requests=3)
    lb = start_lb(zklb, pooled([ng], "http1"), workers=1)
    addr = lb.listen(SVC)
    clean_http_clients(addr, range(30))
    assert metric(lb, NOT_REUSABLE, verdict="close") >= 9
    assert 10 <= ng.accepts <= 12


def test_pool_idle_timeout_closes_pooled_connections(tiny_http, zklb):
    """pool.idle_timeout: pooled connections are closed after it (the gauge drops
    to 0, the backend sees the close), and the next clients connect afresh."""
    be = tiny_http()
    lb = start_lb(zklb, pooled([be], "http1", idle_timeout="600ms"), workers=1)
    addr = lb.listen(SVC)
    # Before the clients: every pooled connection went idle after this, so none
    # may close before t0 + 600 ms (t0 taken after wait_idle could be late by the
    # time a loaded machine takes to answer it).
    t0 = time.monotonic()
    clean_http_clients(addr, range(3))
    wait_idle(lb)
    idle = upstream_counts(lb)["idle"]
    assert be.active == idle
    wait_until(lambda: upstream_counts(lb)["idle"] == 0, 3, what="idle gauge 0")
    took = time.monotonic() - t0
    assert took > 0.5, f"closed {took:.2f}s after the clients began: long before pool.idle_timeout"
    assert metric(lb, DISCARDED, reason="idle_timeout") == idle
    wait_until(lambda: be.active == 0, 2, what="the backend sees the close")
    accepts = be.accepts
    clean_http_clients(addr, range(10, 13))
    assert be.accepts > accepts


# ---------------------------------------------------------------------------
# Prewarm
# ---------------------------------------------------------------------------


def test_prewarm_opens_connections_before_any_client(tiny_http, zklb):
    """prewarm: 3 per backend, spread over two workers: three idle connections per
    backend before any client; clients then use them without new connects."""
    b1, b2 = tiny_http(), tiny_http()
    lb = start_lb(zklb, pooled([b1, b2], "http1", prewarm=3), workers=2)

    def idle_per_backend():
        m = lb.metrics()
        return [m.value(IDLE, service=SVC, backend=b.address) for b in (b1, b2)]

    wait_until(lambda: idle_per_backend() == [3, 3], 3, what="3 idle per backend")
    wait_until(lambda: b1.accepts == 3 and b2.accepts == 3, 2, what="3 accepts each")
    assert [i["idle"] for i in instances_of(lb.services()[SVC])] == [3, 3]
    clean_http_clients(lb.listen(SVC), range(40), concurrency=2)
    up = upstream_counts(lb)
    assert up["reused"] >= 30, up
    # 6 prewarmed; while clients hold connections, each worker's refill tick tops
    # its pools up again: a few more per backend and worker, not one per client.
    assert up["opened"] <= 6 + 2 * 4, up
    wait_until(lambda: b1.accepts + b2.accepts == upstream_counts(lb)["opened"], 2,
               what="backend accepts == zklb's opened counter")
    # Clients return what they took (and refills covered them meanwhile).
    wait_until(lambda: min(idle_per_backend()) >= 3, 3, what="at least 3 idle per backend")


def test_prewarm_refused_backs_off(closed_port, zklb):
    """A backend that refuses connects: prewarm backs off (100 ms doubling) rather
    than retrying on every 200 ms refill tick."""
    cp = closed_port()
    lb = start_lb(zklb, pooled([cp], "http1", prewarm=4), workers=1)
    wait_until(lambda: upstream_counts(lb)["opened"] >= 1, 2, what="a first prewarm attempt")
    t0 = time.monotonic()
    n0 = upstream_counts(lb)["opened"]
    time.sleep(2.0)
    attempts = upstream_counts(lb)["opened"] - n0
    # Without backoff: 4 connects per tick, 40 in 2 s. With it: about 5.
    assert 1 <= attempts <= 8, f"{attempts} prewarm connects in {time.monotonic() - t0:.1f}s"


@pytest.mark.parametrize("mode", ["close", "rst"])
def test_prewarm_dropped_by_backend_is_not_a_failure(mode, backend, zklb):
    """A backend that drops every prewarmed connection (FIN or RST right after the
    accept) is not counted as failing: no connect failures, no ejection."""
    be = backend("drop", mode=mode)
    lb = start_lb(zklb, static_service([be], pool={"reuse": "http1", "prewarm": 2},
                                       health={"failures_to_eject": 1,
                                               "base_ejection": "30s"}), workers=1)
    wait_until(lambda: metric(lb, DISCARDED, reason="closed_while_idle") >= 4, 3,
               what="prewarmed connections dropped")
    m = lb.metrics()
    assert m.value(CONNECT_FAILURES, service=SVC) == 0
    assert m.value("zklb_backend_ejections_total", service=SVC) == 0
    inst = instances_of(lb.services()[SVC])[0]
    assert inst["state"] == "healthy" and inst["failures"] == 0


def test_prewarm_dropped_by_backend_backs_off(backend, zklb):
    """A backend that accepts and closes at once is refusing in all but name: the
    refill must back off as for a refused connect, not reconnect on every tick."""
    be = backend("drop", mode="close")
    start_lb(zklb, pooled([be], "http1", prewarm=4), workers=1)
    wait_until(lambda: be.accepts >= 4, 3, what="prewarm connects")
    a0 = be.accepts
    time.sleep(2.0)
    # Refused connects back off to about 5 attempts in 2 s; no backoff is 40.
    assert be.accepts - a0 <= 10, f"{be.accepts - a0} connects in 2 s"
