"""The balancing algorithms (services.X.balance) over static backends: weighted
least_conn follows the open-connection counts and the weights exactly;
round_robin and random follow the weights over 1,000 short connections.

What happens when the picked backend fails is in test_retries.py.
"""

from collections import Counter

import pytest

from harness import close_all, hold, static_service, tags, wait_until

SVC = "web"


def test_least_conn_picks_least_loaded(backend, zklb):
    bs = [backend(f"b{i}", "tag") for i in (1, 2, 3)]
    lb = zklb(services={SVC: static_service(bs, balance="least_conn")})
    addr = lb.listen(SVC)
    held = hold(addr, 6)
    try:
        assert Counter(t for t, _ in held) == {"b1": 2, "b2": 2, "b3": 2}
        # Free b2 entirely: the next two connections must both land there.
        for t, s in held:
            if t == "b2":
                s.close()
        held = [(t, s) for t, s in held if t != "b2"]
        bs[1].wait_active(0)
        wait_until(lambda: lb.backend_metric("active", SVC, bs[1]) in (0, None), 5,
                   what="zklb to count b2's connections closed")
        more = hold(addr, 2)
        held += more
        assert [t for t, _ in more] == ["b2", "b2"]
        # Now 2/2/2 again: one more each round.
        more = hold(addr, 3)
        held += more
        assert sorted(t for t, _ in more) == ["b1", "b2", "b3"]
    finally:
        close_all(held)


def test_least_conn_weights_over_1000_held_connections(backend, zklb):
    """Weighted least_conn with every connection held open is deterministic:
    each backend's share follows its weight to within a couple of connections."""
    weights = {"b1": 1, "b2": 2, "b3": 5}
    bs = {n: backend(n, "tag") for n in weights}
    lb = zklb(services={SVC: static_service([(bs[n], w) for n, w in weights.items()],
                                            balance="least_conn")},
              nofile=8192)
    held = []
    try:
        held = hold(lb.listen(SVC), 1000)
        got = Counter(t for t, _ in held)
    finally:
        close_all(held)
    total = sum(weights.values())
    for n, w in weights.items():
        want = 1000 * w / total
        assert abs(got[n] - want) <= 5, f"{n} weight {w}: {got[n]} of 1000, want ≈{want}"


@pytest.mark.parametrize("balance,sigmas", [("round_robin", 0), ("random", 6)])
def test_weights_over_1000_connections(backend, zklb, balance, sigmas):
    """1,000 short sequential connections. round_robin: proportions exact up to
    one round per worker; random: within 6 standard deviations (p ≈ 2e-9 to flake)."""
    weights = {"b1": 1, "b2": 2, "b3": 5}
    bs = {n: backend(n, "tag") for n in weights}
    lb = zklb(services={SVC: static_service([(bs[n], w) for n, w in weights.items()],
                                            balance=balance)})
    n_conn = 1000
    got = tags(lb.listen(SVC), n_conn)
    total = sum(weights.values())
    for n, w in weights.items():
        p = w / total
        want = n_conn * p
        tol = max(2 * total, sigmas * (n_conn * p * (1 - p)) ** 0.5)
        assert abs(got[n] - want) <= tol, f"{balance}: {n} weight {w}: {got[n]}, want ≈{want}"
