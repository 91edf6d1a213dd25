"""Health against docs/design.md's `health:` keys, with real backends on loopback:
passive ejection (refused connects, resets before the first byte) and its
backoff, active checks (send_expect, http) with rise/fall, panic mode,
max_ejected_percent, slow start, and the kill-one-backend figure (no new client
connection fails while a backend dies under load).

Durations are short (100 ms checks, 500 ms ejections) so the file runs in well
under a minute. Every wait is a bounded poll; the only sleeps make sure a
slow-start window is over (a lower bound, so a slow machine cannot break them).
"""

import threading
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor

import pytest

import harness
from harness import (ask_tag, close_all, free_port, hold, static_service, tags,
                     wait_until)

SVC = "web"


def states(lb):
    """{'host:port': state} of the service's instances."""
    return {a: i["state"] for a, i in lb.instances(SVC).items()}


def wait_state(lb, backend, state, timeout=5.0):
    """Wait until backend's instance shows `state`; return its instance object."""
    def ok():
        inst = lb.instances(SVC).get(backend.address)
        return inst if inst and inst["state"] == state else None
    return wait_until(ok, timeout, interval=0.02,
                      what=f"{backend.address} to be {state} (states: {states(lb)})")


def service_metric(lb, name):
    return lb.metrics().value(name, service=SVC)


def try_tag(addr, timeout=2.0):
    """ask_tag, or None when the connection failed or closed without a tag."""
    try:
        return ask_tag(addr, timeout) or None
    except OSError:
        return None


# --------------------------------------------------------------------------- passive


def test_refused_backend_is_ejected_retried_and_returns(backend, zklb):
    """A closed port costs clients nothing (retries), is ejected after
    failures_to_eject refusals for base_ejection, and returns when it listens."""
    b1, b2 = backend("b1", "tag"), backend("b2", "tag")
    b3 = backend("b3", "tag", port=free_port())
    b3.stop()                                   # port closed: connects refused
    lb = zklb(services={SVC: static_service(
        [b1, b2, b3], balance="round_robin", retries=2, connect_timeout="1s",
        health={"failures_to_eject": 3, "base_ejection": "500ms", "max_ejection": "1s"})})
    addr = lb.listen(SVC)

    got = Counter()
    ejected_seen = []                           # (ejections, ejected_for_ms) while ejected
    for i in range(200):
        got[ask_tag(addr, timeout=2)] += 1
        if i % 4 == 0:
            inst = lb.instances(SVC)[b3.address]
            if inst["state"] == "ejected":
                ejected_seen.append((inst["ejections"], inst["ejected_for_ms"]))
    assert sum(got.values()) == 200 and set(got) == {"b1", "b2"}, got
    assert ejected_seen, "b3 was never seen ejected"
    first = [ms for n, ms in ejected_seen if n == 1]
    # 0 = due: the deadline passed and the control thread's next tick returns it.
    assert any(ms > 0 for ms in first) and all(ms <= 500 for ms in first), ejected_seen

    inst = lb.instances(SVC)[b3.address]
    assert inst["ejections"] >= 1 and inst["failures"] >= 3, inst
    m = lb.metrics()
    assert m.value("zklb_service_connections_failed_total", service=SVC) == 0
    assert m.value("zklb_service_retries_total", service=SVC) >= 3
    assert m.value("zklb_service_ejections_total", service=SVC) >= 1
    assert m.value("zklb_backend_ejections_total", service=SVC, backend=b3.address) >= 1
    assert m.value(harness.METRIC["connect_failures"], service=SVC,
                   backend=b3.address) >= 3
    lb.wait_for_log(rf"be={b3.address} ejected for \d+ms \(ejection #1\)")

    # Listening again: back within max_ejection (no active check: the timer decides).
    b3.start()
    t0 = time.monotonic()
    wait_state(lb, b3, "healthy", timeout=3.0)
    back_after = time.monotonic() - t0
    # max_ejection 1s, plus the control thread's tick and a loaded machine's slack.
    assert back_after <= 1.0 + 1.0, f"returned after {back_after:.2f}s (max_ejection 1s)"
    assert tags(addr, 30)["b3"] >= 5
    assert b3.accepts >= 5


def test_reset_before_first_byte_ejects(backend, zklb):
    """Accept then RST (SO_LINGER 0): counted as failures, ejected, no more traffic."""
    bad = backend("bad", "rst")
    b1, b2 = backend("b1", "tag"), backend("b2", "tag")
    lb = zklb(services={SVC: static_service(
        [bad, b1, b2], balance="round_robin", retries=2,
        health={"failures_to_eject": 3, "base_ejection": "10s"})})
    addr = lb.listen(SVC)

    lost = 0
    for _ in range(60):
        if try_tag(addr) is None:
            lost += 1
        if lb.instances(SVC)[bad.address]["state"] == "ejected":
            break
    inst = wait_state(lb, bad, "ejected", timeout=0.1)
    assert inst["ejections"] == 1 and inst["failures"] >= 3, inst
    assert 0 < inst["ejected_for_ms"] <= 10_000
    lb.wait_for_log(rf"be={bad.address} ejected for \d+ms \(ejection #1\) after "
                    r"(reset before the first byte|Connection reset by peer)")
    print(f"\nrst backend: ejected after {bad.accepts} accepts; {lost} client "
          f"connections lost to resets")

    accepts = bad.accepts
    assert tags(addr, 40) == Counter({"b1": 20, "b2": 20})
    assert bad.accepts == accepts, "an ejected backend got new connections"


# --------------------------------------------------------------------------- active checks


def test_send_expect_check_marks_down_and_up(backend, zklb):
    """A backend that accepts but never answers the check goes `checking` after
    `fall` failures, gets no new connections, and returns after `rise` passes."""
    b1, b2 = backend("b1", "tag"), backend("b2", "tag")
    rise, fall, interval = 3, 2, 0.1
    # round_robin: the split of sequential connections is exact (least_conn breaks
    # ties at random). A 500 ms check timeout: a slow backend thread on a loaded
    # machine must not fail `fall` checks in a row.
    lb = zklb(services={SVC: static_service([b1, b2], balance="round_robin", health={
        "check": {"type": "send_expect", "send": "?", "expect": "b",
                  "interval": "100ms", "timeout": "500ms", "rise": rise, "fall": fall}})})
    addr = lb.listen(SVC)
    wait_state(lb, b1, "healthy")
    wait_state(lb, b2, "healthy")
    assert set(tags(addr, 20)) == {"b1", "b2"}

    mark = lb.log_mark()
    b2.mode = "hold"                            # accepts, never answers
    wait_state(lb, b2, "checking", timeout=5.0)
    lb.wait_for_log(rf"be={b2.address} check DOWN: timeout", since=mark)
    assert service_metric(lb, "zklb_service_check_failures_total") >= fall
    m = lb.metrics()
    assert m.value("zklb_backend_healthy", service=SVC, backend=b2.address) == 0
    assert m.value("zklb_backend_healthy", service=SVC, backend=b1.address) == 1

    before = lb.instances(SVC)[b2.address]["total"]
    assert tags(addr, 30, timeout=2) == Counter({"b1": 30})
    assert lb.instances(SVC)[b2.address]["total"] == before, "a down backend was routed to"

    mark = lb.log_mark()
    b2.mode = "tag"
    t0 = time.monotonic()
    wait_state(lb, b2, "healthy", timeout=5.0)
    took = time.monotonic() - t0
    lb.wait_for_log(rf"be={b2.address} check UP", since=mark)
    # `rise` passes a jittered interval (>= 90%) apart; the first may come at once.
    assert took >= (rise - 1) * interval * 0.9 - 0.02, f"up after {took:.3f}s"
    assert tags(addr, 20)["b2"] >= 5


def test_http_check_503_down_200_up(backend, zklb):
    b1, b2 = backend("b1", "http"), backend("b2", "http")
    lb = zklb(services={SVC: static_service([b1, b2], balance="round_robin", health={
        "check": {"type": "http", "path": "/health", "interval": "100ms",
                  "timeout": "500ms", "rise": 2, "fall": 2}})})
    addr = lb.listen(SVC)
    wait_state(lb, b1, "healthy")
    wait_state(lb, b2, "healthy")

    mark = lb.log_mark()
    b2.http_status = 503
    wait_state(lb, b2, "checking", timeout=5.0)
    lb.wait_for_log(rf"be={b2.address} check DOWN: status 503", since=mark)
    assert tags(addr, 20) == Counter({"b1": 20})
    assert lb.instances(SVC)[b1.address]["state"] == "healthy"

    b2.http_status = 200
    wait_state(lb, b2, "healthy", timeout=5.0)
    lb.wait_for_log(rf"be={b2.address} check UP", since=mark)
    assert tags(addr, 20)["b2"] >= 5


# --------------------------------------------------------------------------- panic, limits


def test_panic_mode_spreads_over_all_instances(backend, closed_port, zklb):
    """4 of 5 refuse. max_ejected_percent 60 lets 3 be ejected (not the 4th);
    2 of 5 routable is below panic_threshold 50, so zklb balances over all 5:
    ejected instances are still tried (their failure counters keep growing) and
    every client is served by the one good instance through retries."""
    good = backend("good", "tag")
    dead = [closed_port() for _ in range(4)]
    lb = zklb(services={SVC: static_service(
        [dead[0], dead[1], good, dead[2], dead[3]], retries=4, connect_timeout="1s",
        health={"failures_to_eject": 3, "base_ejection": "30s",
                "max_ejected_percent": 60, "panic_threshold": 50})})
    addr = lb.listen(SVC)

    assert tags(addr, 60, timeout=2) == Counter({"good": 60})
    svc = wait_until(lambda: (s := lb.services()[SVC])["panic"] and s, 3,
                     what="panic: true in /services")
    insts = {harness.instance_address(i): i for i in harness.instances_of(svc)}
    ejected = [a for a, i in insts.items() if i["state"] == "ejected"]
    assert len(ejected) == 3, insts                  # 60% of 5, never all 4
    assert insts[good.address]["state"] == "healthy"
    spared = [d.address for d in dead if d.address not in ejected]
    assert len(spared) == 1 and insts[spared[0]]["state"] == "healthy"
    lb.wait_for_log(r"svc=web entering panic mode: 2 of 5 instances routable")
    lb.wait_for_log(r"not ejected: max_ejected_percent=60 reached")
    m = lb.metrics()
    assert m.value("zklb_service_panics_total", service=SVC) >= 1
    assert m.value("zklb_service_panic", service=SVC) == 1

    # In panic the ejected ones still take attempts; retries land on `good`.
    fails0 = {a: insts[a]["failures"] for a in ejected}
    retries0 = m.value("zklb_service_retries_total", service=SVC)
    assert tags(addr, 60, timeout=2) == Counter({"good": 60})
    after = lb.instances(SVC)
    tried = sum(after[a]["failures"] - fails0[a] for a in ejected)
    assert tried >= 10, f"ejected instances got only {tried} attempts in panic"
    m = lb.metrics()
    assert m.value("zklb_service_retries_total", service=SVC) - retries0 >= 30
    assert m.value("zklb_service_connections_failed_total", service=SVC) == 0


class Flap(harness.Protocol):
    """Of every 10 connections, the first 6 are reset at once and 4 are served."""

    def on_open(self):
        if (self.conn.backend.accepts - 1) % 10 < 6:
            self.conn.reset()

    def on_data(self, data):
        self.conn.send(self.conn.backend.name.encode() + b"\n")


def test_flapping_backends_respect_max_ejected_percent(backend, zklb):
    """2 of 4 flap; max_ejected_percent 25 allows 1 ejected at any time."""
    good = [backend("g1", "tag"), backend("g2", "tag")]
    flap = [backend("f1", Flap), backend("f2", Flap)]
    lb = zklb(services={SVC: static_service(
        [flap[0], good[0], flap[1], good[1]], balance="round_robin", retries=1,
        health={"failures_to_eject": 3, "base_ejection": "200ms", "max_ejection": "200ms",
                "max_ejected_percent": 25})})
    addr = lb.listen(SVC)

    stop = threading.Event()
    served = Counter()

    def load():
        deadline = time.monotonic() + 10
        while not stop.is_set() and time.monotonic() < deadline:
            served[try_tag(addr, timeout=1)] += 1

    t = threading.Thread(target=load, daemon=True)
    t.start()
    samples = []
    try:
        deadline = time.monotonic() + 2.5
        while time.monotonic() < deadline:
            st = states(lb)
            samples.append(sorted(a for a, s in st.items() if s == "ejected"))
            time.sleep(0.01)
    finally:
        stop.set()
        t.join(5)
    worst = max(samples, key=len)
    assert len(worst) <= 1, f"{worst} ejected at once (max_ejected_percent 25 of 4)"
    flap_addrs = {f.address for f in flap}
    assert all(set(s) <= flap_addrs for s in samples)
    assert sum(1 for s in samples if s) >= 3, "the limit was never reached"
    assert service_metric(lb, "zklb_service_ejections_total") >= 2
    lb.wait_for_log(r"not ejected: max_ejected_percent=25 reached")
    print(f"\nflapping: {len(samples)} samples, "
          f"{sum(1 for s in samples if s)} with one ejected, none with more; "
          f"served {dict(served)}")


# --------------------------------------------------------------------------- slow start


def seconds(s):
    """'3s' / '250ms' → seconds."""
    return float(s[:-2]) / 1000 if s.endswith("ms") else float(s[:-1])


def _slow_start_run(backend, zklb, slow_start, weight, after_window=True):
    """Two backends hold 20 connections each; a third is added by reload and
    20 more connections are opened at once (then, with after_window, 20 more
    once the window is over). Returns (the new one's share of batch 1, batch 1
    seconds, its share of batch 2 or None)."""
    b1, b2 = backend("b1", "tag"), backend("b2", "tag")
    b3 = backend("b3", "tag")
    svc = static_service([(b1, weight), (b2, weight)], balance="least_conn",
                         slow_start=slow_start)
    lb = zklb(services={SVC: svc})
    started = time.monotonic()
    addr = lb.listen(SVC)
    held = []
    try:
        held += hold(addr, 40)
        assert Counter(t for t, _ in held) == {"b1": 20, "b2": 20}
        window = seconds(slow_start)
        # The first two ramp too from start-up: let their window end first.
        time.sleep(max(0.0, started + window + 0.2 - time.monotonic()))

        cfg = lb.config
        cfg["services"][SVC]["discovery"]["backends"].append(f"{b3.address} weight={weight}")
        lb.reload(cfg)
        wait_until(lambda: b3.address in lb.instances(SVC), 5, interval=0.01,
                   what="b3 added by reload")
        t0 = time.monotonic()
        batch1 = hold(addr, 20)
        took = time.monotonic() - t0
        held += batch1
        share1 = sum(t == "b3" for t, _ in batch1)
        share2 = None
        if window and after_window:
            time.sleep(max(0.0, t0 + window + 0.2 - time.monotonic()))
            batch2 = hold(addr, 20)
            held += batch2
            share2 = sum(t == "b3" for t, _ in batch2)
        return share1, took, share2
    finally:
        close_all(held)


@pytest.mark.slow
def test_slow_start_ramps_new_instance(backend, zklb):
    """least_conn would give a new, empty instance every new connection until it
    catches up (the control run); slow start gives it a small share at first,
    and the full share once the window is over."""
    control, _, _ = _slow_start_run(backend, zklb, "0s", 100)
    share1, took, share2 = _slow_start_run(backend, zklb, "3s", 100)
    print(f"\nslow start: new instance got {control}/20 without slow start, "
          f"{share1}/20 in the first {took * 1000:.0f} ms of a 3 s window, "
          f"{share2}/20 after it")
    assert control >= 18
    # At 10% weight it takes ~3 of 20; at the window's middle (w = 55%) ~13.
    assert share1 <= 12, f"{share1}/20 in {took:.2f}s: no ramp"
    assert share1 < control
    assert share2 >= 15, f"only {share2}/20 after the window: the ramp never ended"


def test_slow_start_at_default_weight(backend, zklb):
    """Instances from ZooKeeper have weight 1: slow start must ramp them too."""
    share1, took, _ = _slow_start_run(backend, zklb, "3s", 1, after_window=False)
    assert share1 <= 12, f"{share1}/20 in {took:.2f}s: no ramp at weight 1"


# --------------------------------------------------------------------------- kill one under load


@pytest.mark.slow
def test_kill_one_backend_under_load_fails_no_new_connection(backend, zklb):
    """Steady load of short connections across 3 backends; one backend dies in
    the middle (listener and connections closed). New connections never fail:
    the dead one is retried around, then ejected. Connections that were open to
    it at that moment die with it; they are counted apart."""
    bs = [backend(f"b{i}", "tag") for i in (1, 2, 3)]
    lb = zklb(services={SVC: static_service(
        bs, retries=2, connect_timeout="1s",
        # Long enough that b3 is surely still ejected when read after the run.
        health={"failures_to_eject": 3, "base_ejection": "60s"})})
    addr = lb.listen(SVC)
    duration, kill_at, threads, rate = 5.0, 2.5, 8, 400.0   # rate: ops/s over all threads
    kill = {}
    results = []                                # (start, end, tag or None)
    lock = threading.Lock()
    t_start = time.monotonic()

    def client(k):
        mine = []
        gap = threads / rate
        nxt = t_start + k * gap / threads
        end = t_start + duration
        while True:
            now = time.monotonic()
            if now >= end:
                break
            if now < nxt:
                time.sleep(nxt - now)
            nxt += gap
            s = time.monotonic()
            tag = try_tag(addr, timeout=2)
            mine.append((s, time.monotonic(), tag))
        with lock:
            results.extend(mine)

    with ThreadPoolExecutor(threads) as ex:
        futs = [ex.submit(client, k) for k in range(threads)]
        time.sleep(max(0.0, t_start + kill_at - time.monotonic()))
        kill["begin"] = time.monotonic()
        bs[2].stop()                            # listener and its connections closed
        kill["end"] = time.monotonic()
        for f in futs:
            f.result(timeout=duration + 10)
    elapsed = max(e for _, e, _ in results) - t_start

    total = len(results)
    failed = [r for r in results if r[2] is None]
    steady = [r for r in failed if r[1] < kill["begin"]]  # over before the kill: none
    died = [r for r in failed if r[0] < kill["end"] and r[1] >= kill["begin"]]  # in flight
    failed_new = [r for r in failed if r[0] >= kill["end"]]
    before = Counter(t for s, _, t in results if s < kill["begin"] and t)
    after = Counter(t for s, _, t in results if s >= kill["end"])
    m = lb.metrics()
    retries = m.value("zklb_service_retries_total", service=SVC)
    inst = lb.instances(SVC)[bs[2].address]
    print(f"\nkill-one-backend: {total} connections in {elapsed:.2f}s "
          f"({total / elapsed:.0f}/s) over {threads} threads; b3 killed at "
          f"{kill['begin'] - t_start:.2f}s")
    print(f"  failed new connections: {len(failed_new)}; open to b3 when it died "
          f"(failed, counted apart): {len(died)}")
    print(f"  served before kill {dict(before)}, after {dict(after)}; retries {retries:.0f}, "
          f"b3 {inst['state']} (ejections {inst['ejections']}, failures {inst['failures']})")

    assert total / elapsed >= 150, f"load too low to mean anything: {total / elapsed:.0f}/s"
    assert after and "b3" not in after, after
    assert set(before) == {"b1", "b2", "b3"}, before
    assert inst["ejections"] >= 1 and inst["state"] == "ejected", inst
    assert not steady, f"{len(steady)} connections failed before the kill"
    assert len(died) <= threads, died           # at most one in flight per client thread
    assert not failed_new, f"{len(failed_new)} new connections failed, e.g. {failed_new[:5]}"
