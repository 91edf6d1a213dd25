"""bench/zk-load in a small configuration: a fleet's manners, counted by ZooKeeper.

20 zklb hosts, one service of 500 instances, a deploy storm of 50 replacements
over 2.5 s, and (with the new defaults) an outage that expires every session.
Everything asserted is a count from the server's mntr, never a duration:

  - coalescing: each host lists at most once per coalesce window during the
    storm, so requests per host per change fall by at least the factor the
    storm's rate implies against the same storm without coalescing;
  - the re-sync after the outage: every host re-read the set, and the reads are
    spread over the jitter window (the busiest 100 ms holds a fraction of them);
  - every host converges to the final set (bench's wait_converged fails if not).

The figures are printed (pytest -s) for the record; bench/zk-load runs the same
thing at scale.
"""

import math

import pytest

import harness

pytestmark = [pytest.mark.zookeeper, pytest.mark.slow]

HOSTS = 20
INSTANCES = 500
STORM = 50
STORM_S = 2.5
COALESCE_S = 0.2
JITTER_S = 3.0


def test_fleet_storm_and_outage(zookeeper, kazoo_client, tmp_path):
    bench = harness.load_bench_script("zk-load")
    kz = kazoo_client(zookeeper.hosts)
    instances = bench.Instances(kz)
    instances.add(INSTANCES)

    before = bench.run_mode(zookeeper, kz, instances, tmp_path / "before", hosts=HOSTS,
                            storm=STORM, storm_seconds=STORM_S, coalesce="0",
                            resync_jitter="0", do_outage=False)
    after = bench.run_mode(zookeeper, kz, instances, tmp_path / "after", hosts=HOSTS,
                           storm=STORM, storm_seconds=STORM_S,
                           coalesce=f"{int(COALESCE_S * 1000)}ms",
                           resync_jitter=f"{int(JITTER_S)}s", do_outage=True)
    print(f"\nbefore: {before}\nafter: {after}")

    # The start is the same: one list and one get per instance, a watch on each.
    for r in (before, after):
        assert r["start"]["gets"] == pytest.approx(INSTANCES, abs=1), r["start"]
        assert r["watches_per_host"] == pytest.approx(INSTANCES + 1, abs=1)

    # Without coalescing, every replacement (a delete and a create: two children
    # events) costs each host at least one and a half lists.
    b = before["storm_result"]
    assert b["per_host_per_change"]["lists"] >= 1.5, b

    # With it, at most one list per window of at least 0.75 × coalesce while the
    # storm lasts, plus the one that closes it.
    a = after["storm_result"]
    bound = math.ceil(a["storm_s"] / (0.75 * COALESCE_S)) + 2
    assert a["lists_per_host"] <= bound, (a, bound)
    # Each new instance is read once either way (its data is needed).
    assert a["gets_per_host"] == pytest.approx(STORM, abs=2), a

    # So requests per host per change fall at least by the factor the storm's rate
    # implies: (1.5 lists + 1 get) per change against (bound lists + S gets) / S.
    implied = (1.5 + 1) / ((bound + STORM) / STORM)
    ratio = b["per_host_per_change"]["requests"] / a["per_host_per_change"]["requests"]
    print(f"requests per host per change: before {b['per_host_per_change']['requests']:.2f}, "
          f"after {a['per_host_per_change']['requests']:.2f} (÷{ratio:.2f}, "
          f"implied ≥ ÷{implied:.2f})")
    assert ratio >= implied, (ratio, implied)

    # The outage: every host re-read everything, spread over the jitter window.
    o = after["outage"]
    assert o["reads_total"] >= HOSTS * INSTANCES, o
    assert o["peak_reads_per_100ms"] <= 0.35 * o["reads_total"], o["bins"]
    assert o["spread_s"] >= JITTER_S / 3, o["bins"]

    # No host reported a sanitizer error (the suite's build has ASan and UBSan).
    for log in tmp_path.glob("*/h*/zklb.log"):
        text = log.read_text(errors="replace")
        assert "AddressSanitizer" not in text and "runtime error" not in text, log
