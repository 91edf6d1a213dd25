"""The relay: one client connection and one upstream connection, with static
discovery. Bytes arrive exactly, in both directions and at any size; the server
may speak first; a half-close on either side reaches the other while the
reverse direction keeps flowing; a reset on either side reaches the other as a
reset; a connect that never completes and a connection
that stays idle are closed after connect_timeout and idle_timeout.

Retries on another backend are in test_retries.py; the balancing algorithms in
test_balance.py.
"""

import random
import socket
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import harness
from harness import (closed_within, connect, echo_roundtrip, random_bytes, recv_all, sha256,
                     static_service, stream, wait_until)

SVC = "web"


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


def _serve_one(lsock, script, outcomes):
    """Accept one connection, wait for its first bytes, append script(conn)."""
    c, _ = lsock.accept()
    with c:
        c.settimeout(10)
        c.recv(65536)
        outcomes.append(script(c))


def test_a_reset_crosses_the_relay_both_ways(zklb):
    """A backend's TCP RST after 100 kB reaches the client as a RST (a FIN would pass
    the truncated transfer for a complete one), and a client's RST reaches the
    backend as a RST."""
    ls = socket.create_server((harness.LOOPBACK, 0))
    ls.settimeout(10)
    lb = zklb(services={SVC: static_service([f"{harness.LOOPBACK}:{ls.getsockname()[1]}"])})
    addr = lb.listen(SVC)
    outcomes = []

    def send_then_reset(c):
        return harness.send_then_reset(c, 100_000)

    def watch(c):
        return harness.read_to_the_end(c, 10)[0]

    try:
        for script in (send_then_reset, watch):
            t = threading.Thread(target=_serve_one, args=(ls, script, outcomes))
            t.start()
            s = connect(addr)
            s.sendall(b"go")
            if script is send_then_reset:
                end, got = harness.read_to_the_end(s, 10)
                assert (end, len(got)) == ("reset", 100_000)
                s.close()
            else:
                wait_until(lambda: lb.metrics().value("zklb_backend_bytes_out_total",
                                                      service=SVC) == 4,
                           5, what="the bytes at the backend")
                harness.reset(s)
            t.join(10)
            assert not t.is_alive()
        assert outcomes == ["reset", "reset"]
    finally:
        ls.close()
