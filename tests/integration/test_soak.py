"""Soak: thousands of client connections opening and closing (some reset),
instances churning in ZooKeeper and health checks flapping, all at once,
through the real binary (the suite's ASan+UBSan build) on loopback; then
everything calms down and zklb must be back where it started:

  - descriptors (/proc/PID/fd): exactly the starting count;
  - every gauge of /metrics, series by series: the starting value (except
    zklb_uptime_seconds, which only grows);
  - RSS (/proc/PID/status VmRSS): within RSS_SLACK_MB of the start. The
    baseline is taken after a warm-up round of the same load, so allocator
    arenas, thread caches and libevent tables already exist; ASan's
    quarantine is cut to 8 MB for this process so it does not pass for a leak.

Bounded by counts (CONNECTIONS, CHURN_MAX, FLAP_MAX) and by time (DEADLINE_S);
the figures are printed (pytest -s) for the report.
"""

import os
import random
import socket
import struct
import threading
import time

import pytest

import harness
from harness import free_addr, wait_until
from test_resolver import curator

pytestmark = pytest.mark.zookeeper

SVC = "web"
CONNECTIONS = 20000         # client connections in the soak, at least ...
CONNECTIONS_MAX = 400000    # ... and at most (the load runs while churn and flaps do)
WARMUP = 20000              # before the baseline
CLIENTS = 8                 # client threads
CHURN = 600                 # ZooKeeper writes (delete or create an instance), 20 a second
FLAPS = 200                 # health status flips, 7 a second
DEADLINE_S = 120            # the soak stops here even if the counts are not reached
RSS_SLACK_MB = 16


def fd_count(pid):
    return len(os.listdir(f"/proc/{pid}/fd"))


def rss_kb(pid):
    for line in open(f"/proc/{pid}/status"):
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise AssertionError("no VmRSS")


def gauges(lb):
    """{'name{labels}': value} of every gauge series but uptime."""
    text = lb.admin_get("/metrics")[2].decode()
    kinds = {}
    for line in text.splitlines():
        if line.startswith("# TYPE "):
            _, _, name, kind = line.split()
            kinds[name] = kind
    m = harness.parse_metrics(text)
    return {key: v for key, v in m.items()
            if kinds.get(key.split("{")[0]) == "gauge" and not key.startswith("zklb_uptime")}


def one_connection(addr, rng, stats):
    """Open, ask for a tag, close — one in ten with a reset instead of a FIN."""
    try:
        s = socket.create_connection(addr, timeout=5)
    except OSError:
        stats["connect_errors"] += 1
        return
    try:
        s.sendall(b"?")
        line = harness.recv_line(s)
        stats["ok" if line else "empty"] += 1
    except OSError:
        stats["io_errors"] += 1
    finally:
        if rng.random() < 0.1:
            s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        s.close()


def load(addr, n, deadline, n_max=None, busy=lambda: False):
    """At least n connections (up to n_max while busy() says the rest of the soak
    runs), from CLIENTS threads, until deadline."""
    stats = {"ok": 0, "empty": 0, "connect_errors": 0, "io_errors": 0}
    lock = threading.Lock()
    done = [0]

    def client(seed):
        rng = random.Random(seed)
        mine = {k: 0 for k in stats}
        while time.monotonic() < deadline:
            with lock:
                if done[0] >= (n_max or n) or (done[0] >= n and not busy()):
                    break
                done[0] += 1
            one_connection(addr, rng, mine)
        with lock:
            for k, v in mine.items():
                stats[k] += v

    threads = [threading.Thread(target=client, args=(i,), daemon=True) for i in range(CLIENTS)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(max(1.0, deadline - time.monotonic() + 10))
    stats["total"] = sum(stats[k] for k in ("ok", "empty", "connect_errors", "io_errors"))
    return stats


def test_soak_returns_to_its_starting_state(backend, shared_zookeeper, kazoo_client, zk_path,
                                            zklb):
    k = kazoo_client(shared_zookeeper.hosts)
    stable = [backend(f"s{i}", "http") for i in range(4)]
    churners = [backend(f"c{i}", "http") for i in range(2)]
    flappers = stable[2:]
    path = f"{zk_path}/web"
    for b in stable + churners:
        k.create(f"{path}/{b.name}", curator(b.name, "127.0.0.1", b.port), makepath=True)
    asan = os.environ.get("ASAN_OPTIONS", "")
    lb = zklb(services={SVC: {"listen": free_addr(), "connect_timeout": "1s", "retries": 3,
                              "discovery": {"type": "curator", "path": path,
                                            "collapse_guard": 1.0},
                              "health": {"max_ejected_percent": 100, "check": {
                                  "type": "http", "path": "/health", "interval": "100ms",
                                  "timeout": "500ms", "rise": 1, "fall": 1}}}},
              zookeeper={"hosts": shared_zookeeper.hosts, "session_timeout": "4s"},
              env={"ASAN_OPTIONS": (asan + ":" if asan else "") + "quarantine_size_mb=8"})
    addr = harness.split_addr(lb.listen(SVC))
    pid = lb.pid

    def all_healthy():
        return {i["id"]: i["state"] for i in harness.instances_of(lb.services()[SVC])} == \
            {b.name: "healthy" for b in stable + churners}

    def calm():
        wait_until(all_healthy, 15, what="every instance listed and healthy")
        wait_until(lambda: lb.metrics().value("zklb_connections_active") == 0, 15,
                   what="no client connection open")

    # Warm-up with the same load, then the baseline.
    warm = load(addr, WARMUP, time.monotonic() + 60)
    assert warm["ok"] == WARMUP, warm
    calm()
    start_fds = min(fd_count(pid) for _ in range(20) if time.sleep(0.05) is None)
    start_rss = rss_kb(pid)
    start_gauges = gauges(lb)

    # The soak: load, churn and flapping together, each bounded.
    stop = threading.Event()
    events = {"churn": 0, "flaps": 0}

    def churn():
        rng = random.Random(1)
        present = {b.name: True for b in churners}
        while not stop.is_set() and events["churn"] < CHURN:
            b = rng.choice(churners)
            node = f"{path}/{b.name}"
            if present[b.name]:
                k.delete(node)
            else:
                k.create(node, curator(b.name, "127.0.0.1", b.port))
            present[b.name] = not present[b.name]
            events["churn"] += 1
            time.sleep(0.05)
        for b in churners:                          # back as they were
            if not present[b.name]:
                k.create(f"{path}/{b.name}", curator(b.name, "127.0.0.1", b.port))

    def flap():
        rng = random.Random(2)
        while not stop.is_set() and events["flaps"] < FLAPS:
            b = rng.choice(flappers)
            b.http_status = 503 if b.http_status == 200 else 200
            events["flaps"] += 1
            time.sleep(0.15)
        for b in flappers:
            b.http_status = 200

    t0 = time.monotonic()
    helpers = [threading.Thread(target=churn, daemon=True),
               threading.Thread(target=flap, daemon=True)]
    for t in helpers:
        t.start()
    soak = load(addr, CONNECTIONS, t0 + DEADLINE_S, CONNECTIONS_MAX,
                busy=lambda: any(t.is_alive() for t in helpers))
    stop.set()
    for t in helpers:
        t.join(30)
    soak_s = time.monotonic() - t0
    assert lb.running(), "zklb died during the soak"
    peak_rss = rss_kb(pid)

    calm()
    wait_until(lambda: fd_count(pid) == start_fds, 10,
               what=f"descriptors back to {start_fds} (now {fd_count(pid)})")
    end_fds = fd_count(pid)
    wait_until(lambda: gauges(lb) == start_gauges, 10, what="every gauge back to its start")
    end_rss = rss_kb(pid)

    print(f"\nsoak: {soak['total']} connections in {soak_s:.1f}s ({soak['ok']} answered, "
          f"{soak['empty']} closed early, {soak['io_errors']} I/O errors, "
          f"{soak['connect_errors']} connect errors); {events['churn']} ZooKeeper churn "
          f"events; {events['flaps']} health flips")
    print(f"soak: fds {start_fds} -> {end_fds}; RSS {start_rss // 1024} MB -> peak "
          f"{peak_rss // 1024} MB -> {end_rss // 1024} MB; {len(start_gauges)} gauge series "
          f"back to their start")
    # The soak ran: counts reached or the deadline hit with a real amount of work.
    assert soak["total"] >= CONNECTIONS, soak
    assert soak["ok"] >= soak["total"] * 0.9, soak
    assert events == {"churn": CHURN, "flaps": FLAPS}, events
    assert end_fds == start_fds
    assert end_rss <= start_rss + RSS_SLACK_MB * 1024, \
        f"RSS grew from {start_rss} kB to {end_rss} kB"
    assert lb.sanitizer_report() is None or not lb.sanitizer_report()
