"""The relay: one client connection and one upstream connection, with static
discovery. Bytes arrive exactly, in both directions and at any size; the server
may speak first; a half-close on either side reaches the other while the
reverse direction keeps flowing; a reset on either side reaches the other as a
reset; a connect that never completes and a connection
that stays idle are closed after connect_timeout and idle_timeout.

Every test runs against each relay (relays.py): user, kernel (BPF sockmap)
and the kernel relay's fallback to user space. Resets either way, a 16 MiB
transfer each way, a slow reader that must stall the sender at a bound (the
kernel relay spills to user space there) and a drain run on each too.

Retries on another backend are in test_retries.py; the balancing algorithms in
test_balance.py.
"""

import random
import signal
import socket
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import harness
from harness import (closed_within, connect, connect_refused, echo_roundtrip, random_bytes,
                     recv_all, sha256, static_service, stream, wait_until)
from relays import may_fall_back, relay, zklb  # noqa: F401 (fixtures: every test runs on each relay)

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


@may_fall_back
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


def test_half_close_server_first_mid_connection(backend, zklb):
    """As above, with the backend's FIN after an exchange (the kernel relay has
    the connection by then and must pass the FIN on after the bytes before it)."""
    class AnswerAndShut(harness.Protocol):
        def on_data(self, data):
            if not self.conn.shut_after_flush:
                self.conn.send(data * 1000)
                self.conn.shutdown_after_flush()

    b = backend("a", AnswerAndShut)
    lb = zklb(services={SVC: static_service([b])})
    s = connect(lb.listen(SVC))
    s.sendall(b"0123456789")
    assert recv_all(s, timeout=5) == b"0123456789" * 1000
    data = random_bytes(100_000, seed=6)
    s.sendall(data)
    s.shutdown(socket.SHUT_WR)
    wait_until(lambda: b.bytes_received == 10 + len(data), 5,
               what=f"backend received {10 + len(data)} bytes (has {b.bytes_received})")
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
def test_16mib_each_way(backend, zklb):
    """16 MiB up and the same 16 MiB back at once, byte for byte."""
    b = backend("b1", "echo")
    lb = zklb(services={SVC: static_service([b])})
    data = random_bytes(16 << 20, seed=16)
    got = stream(lb.listen(SVC), data, timeout=60)
    assert len(got) == len(data) and sha256(got) == sha256(data)


def test_client_reset_closes_upstream(backend, zklb):
    b = backend("h", "hold")
    lb = zklb(services={SVC: static_service([b])})
    s = connect(lb.listen(SVC))
    s.sendall(b"x" * 1000)
    wait_until(lambda: b.bytes_received == 1000, 5, what="the backend has the bytes")
    harness.reset(s)
    b.wait_active(0)
    assert lb.metrics().value("zklb_connections_closed_total", reason="client_error") == 1


def test_backend_reset_reaches_client(backend, zklb):
    class ResetOnData(harness.Protocol):
        def on_data(self, data):
            self.conn.reset()

    b = backend("r", ResetOnData)
    lb = zklb(services={SVC: static_service([b])})
    s = connect(lb.listen(SVC))
    s.sendall(b"ping\n")
    assert closed_within(s, 5) is not None, "the backend's reset did not reach the client"
    s.close()
    wait_until(lambda: lb.metrics().value("zklb_connections_closed_total",
                                          reason="backend_error") == 1, 5,
               what="the relay closed as backend_error")


class Sender:
    """A backend of its own that sends `blob` to its first client and counts
    what its socket took, so a test sees when a reader that reads nothing has
    stalled it."""

    def __init__(self, blob):
        self.blob = blob
        self.sent = 0
        self.lsock = socket.create_server(("127.0.0.1", 0))
        self.address = "127.0.0.1:%d" % self.lsock.getsockname()[1]
        self.thread = threading.Thread(target=self.run, daemon=True)
        self.thread.start()

    def run(self):
        c, _ = self.lsock.accept()
        c.settimeout(60)
        view = memoryview(self.blob)
        while self.sent < len(self.blob):
            self.sent += c.send(view[self.sent:self.sent + (256 << 10)])
        c.close()

    def stop(self):
        self.lsock.close()
        self.thread.join(5)


def test_slow_reader_stalls_sender_at_a_bound(zklb, relay):
    """A client that reads nothing stops the backend after a bounded amount,
    well short of the whole download, and every byte still arrives once it
    reads. The bound is the sockets' buffers (TCP grows them up to tcp_rmem's
    maximum, 32 MiB here) plus max_buffer; the kernel relay adds what the
    sender gets in before the worker takes the pair out of the verdict map
    (its redirect queue has no bound of its own)."""
    blob = random_bytes(128 << 20, seed=21)
    src = Sender(blob)
    lb = zklb(services={SVC: static_service([src.address])})
    s = connect(lb.listen(SVC), timeout=60)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 256 << 10)
    wait_until(lambda: src.sent > 0, 5, what="the backend started sending")
    last = -1
    deadline = time.monotonic() + 10
    while src.sent != last and time.monotonic() < deadline:
        last = src.sent
        time.sleep(0.5)
    stalled = src.sent
    assert stalled < 80 << 20, f"the backend sent {stalled} bytes to a reader reading nothing"
    got = recv_all(s, timeout=60, limit=len(blob) + 1)
    s.close()
    src.stop()
    assert len(got) == len(blob) and sha256(got) == sha256(blob)
    if relay == "kernel":
        assert lb.metrics().value("zklb_service_kernel_spills_total", service=SVC) == 1
    print(f"relay {relay}: the backend stalled after {stalled} bytes")


def test_drain_lets_transfer_finish(backend, zklb):
    """SIGTERM: new clients are refused, an open transfer runs to its end."""
    b = backend("d", "digest")
    lb = zklb(services={SVC: static_service([b])}, drain_timeout="20s")
    addr = lb.listen(SVC)
    s = connect(addr, timeout=20)
    data = random_bytes(4 << 20, seed=5)
    s.sendall(data[:1 << 20])
    lb.send_signal(signal.SIGTERM)
    wait_until(lambda: connect_refused(addr), 3, what="new connections to be refused")
    s.sendall(data[1 << 20:])
    s.shutdown(socket.SHUT_WR)
    assert recv_all(s, timeout=20).decode() == f"{len(data)} {sha256(data)}\n"
    s.close()
    assert lb.wait(10) == 0
