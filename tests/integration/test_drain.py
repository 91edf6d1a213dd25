"""SIGTERM and SIGINT drain: new connections are refused at once, open ones may
finish, zklb exits 0 when they are done or when drain_timeout runs out.

That announced instances are withdrawn before the drain starts is in
test_announce.py.
"""

import signal
import time

import pytest

from harness import closed_within, connect, connect_refused, echo_roundtrip, static_service, wait_until

SVC = "web"


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
