"""Connect-phase retries (services.X.retries): a refused, reset or timed-out
connect is retried on another instance before the client sees anything, with
every balancing algorithm, never on an instance the same client already tried;
a backend that resets before its first byte is ejected and stops costing clients.

Ejection and active checks in depth are in test_health.py.
"""

import time

import pytest

from harness import METRIC, ask_tag, backend_labels, static_service

SVC = "web"


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
