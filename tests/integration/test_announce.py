"""announce: against a real ZooKeeper. zklb registers the services of its host
as ephemeral Curator 5 instances behind a local check, follows the check
(rise/fall), registers again after a session expiry or an operator's delete,
applies reloads, withdraws before a drain, and a second zklb discovers what the
first one announced.

kazoo is the independent client that reads what zklb announced. Every wait is a
poll with a deadline; every process is stopped by PID.
"""

import json
import os
import re
import signal
import time

import pytest

import harness
from harness import (close_all, free_addr, hold, instances_of, static_service, tags, tags_until,
                     zk_section)

pytestmark = pytest.mark.zookeeper

UUID_V4 = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$")
CURATOR_KEYS = ["name", "id", "address", "port", "sslPort", "payload", "registrationTimeUTC",
                "serviceType", "uriSpec"]

# Checks in these tests: a probe every 100 ms, up after 2 passes, down after 2 failures.
INTERVAL = 0.1
RISE = 2
FALL = 2


def announce_entry(service, base_path, port, address="127.0.0.1", fall=FALL, **extra):
    e = {"service": service, "base_path": base_path, "address": address, "port": port,
         "check": {"type": "tcp", "interval": f"{int(INTERVAL * 1000)}ms", "timeout": "200ms",
                   "rise": RISE, "fall": fall}}
    e.update(extra)
    return e


def children(k, path):
    try:
        return k.get_children(path)
    except Exception:  # noqa: BLE001 - NoNodeError while the parent is missing
        return []


def wait_one_child(k, path, timeout=10.0):
    """Wait until path has exactly one child; return (id, parsed JSON, stat)."""
    kids = harness.wait_until(lambda: children(k, path) if len(children(k, path)) == 1 else None,
                              timeout, interval=0.01, what=f"one child under {path}")
    data, stat = k.get(f"{path}/{kids[0]}")
    return kids[0], json.loads(data), stat


def wait_no_child(k, path, timeout=10.0):
    harness.wait_until(lambda: not children(k, path), timeout, interval=0.01,
                       what=f"no child under {path}")


def curator_map(payload):
    """A mapping payload as Curator writes a Map: Jackson's "@class" first."""
    return {"@class": "java.util.LinkedHashMap", **payload}


def assert_curator(doc, name, id_, address, port, payload, t0_ms, t1_ms):
    """Every field Curator 5 writes, with its JSON type, and nothing else."""
    assert list(doc.keys()) == CURATOR_KEYS, doc
    assert isinstance(doc["name"], str) and doc["name"] == name
    assert isinstance(doc["id"], str) and doc["id"] == id_
    assert UUID_V4.match(doc["id"]), doc["id"]
    assert isinstance(doc["address"], str) and doc["address"] == address
    assert type(doc["port"]) is int and doc["port"] == port
    assert doc["sslPort"] is None
    assert doc["payload"] == curator_map(payload)
    assert list(doc["payload"])[0] == "@class"
    assert type(doc["registrationTimeUTC"]) is int
    assert t0_ms - 1000 <= doc["registrationTimeUTC"] <= t1_ms + 1000
    assert doc["serviceType"] == "DYNAMIC"
    assert doc["uriSpec"] is None
    assert "enabled" not in doc


def now_ms():
    return int(time.time() * 1000)


def test_announce_registers_follows_check_and_reregisters(shared_zookeeper, zk_path,
                                                           kazoo_client, backend, zklb):
    k = kazoo_client(shared_zookeeper.hosts)
    base = zk_path + "/services"
    b1 = backend("b1", mode="tag")
    payload = {"zone": "a", "weight": 3, "tags": ["x", "y"], "nested": {"on": True}}
    t0 = now_ms()
    z = zklb(services={}, zookeeper=zk_section(shared_zookeeper),
             announce=[announce_entry("web", base, b1.port, payload=payload)])

    # healthy -> an ephemeral node whose data is Curator's ServiceInstance
    id1, doc, stat = wait_one_child(k, base + "/web")
    assert_curator(doc, "web", id1, "127.0.0.1", b1.port, payload, t0, now_ms())
    assert stat.ephemeralOwner != 0
    first_reg = doc["registrationTimeUTC"]
    z.wait_for_log(r"announce svc=web id=%s: registered" % id1)

    # the backend stops -> removed within fall x interval (plus one probe's timeout)
    b1.stop()
    t_stop = time.monotonic()
    wait_no_child(k, base + "/web", timeout=5)
    took = time.monotonic() - t_stop
    print(f"\nannounce: node removed {took * 1000:.0f} ms after the backend stopped "
          f"(fall={FALL} x interval={INTERVAL * 1000:.0f}ms)")
    # fall x interval is ~0.2 s; the margin is for a loaded machine, and the bound
    # stays below the 2 s session timeout (a session loss would remove it too).
    assert took < 1.5, f"removed after {took:.2f}s"
    z.wait_for_log(r"check down after 2 failures")

    # it comes back -> registered again: same id, a new registrationTimeUTC
    time.sleep(0.01)
    b1.restart()
    id2, doc2, _ = wait_one_child(k, base + "/web")
    assert id2 == id1
    assert_curator(doc2, "web", id1, "127.0.0.1", b1.port, payload, t0, now_ms())
    assert doc2["registrationTimeUTC"] > first_reg


def test_announce_parents_are_containers(tmp_path, kazoo_client, backend, zklb):
    """Missing parents are made as CONTAINERs (as Curator does): the server removes them
    once empty, and the next registration makes them again."""
    # Reap empty CONTAINER nodes every 200 ms instead of every minute.
    zk = harness.ZooKeeper(tmp_path / "zookeeper",
                           jvm_props={"znode.container.checkIntervalMs": 200})
    try:
        zk.start()
        k = kazoo_client(zk.hosts)
        base = "/deep/services"
        b1 = backend("b1", mode="tag")
        zklb(services={}, zookeeper=zk_section(zk),
             announce=[announce_entry("web", base, b1.port)])
        id1, _, _ = wait_one_child(k, base + "/web")
        b1.stop()
        # the node goes, then every empty container above it, innermost first
        harness.wait_until(lambda: k.exists("/deep") is None, 10, interval=0.05,
                           what="empty container parents reaped")
        b1.restart()
        id2, _, _ = wait_one_child(k, base + "/web")
        assert id2 == id1
    finally:
        zk.cleanup()


def test_announce_address_auto_and_ssl_port(shared_zookeeper, zk_path, kazoo_client,
                                            backend, zklb):
    k = kazoo_client(shared_zookeeper.hosts)
    base = zk_path + "/services"
    b1 = backend("b1", mode="tag")
    z = zklb(services={}, zookeeper=zk_section(shared_zookeeper),
             announce=[announce_entry("db", base, b1.port, address="auto", ssl_port=7443)])
    _, doc, _ = wait_one_child(k, base + "/db")
    # auto: the first UP non-loopback IPv4 address; 127.0.0.1 only when there is none
    parts = doc["address"].split(".")
    assert len(parts) == 4 and all(p.isdigit() and 0 <= int(p) <= 255 for p in parts)
    if doc["address"] == "127.0.0.1":
        z.wait_for_log(r"no UP non-loopback IPv4 interface", timeout=1)
    assert type(doc["sslPort"]) is int and doc["sslPort"] == 7443
    assert doc["payload"] is None
    assert "enabled" not in doc


def test_announce_recreated_after_session_expiry(shared_zookeeper, zk_path, kazoo_client,
                                                 backend, zklb):
    k = kazoo_client(shared_zookeeper.hosts)
    base = zk_path + "/services"
    b1 = backend("b1", mode="tag")
    z = zklb(services={}, zookeeper=zk_section(shared_zookeeper),
             announce=[announce_entry("web", base, b1.port, fall=5)])
    id1, doc1, stat1 = wait_one_child(k, base + "/web")

    # Freeze zklb past its 2 s session timeout: the server expires the session
    # and deletes its ephemeral node; once thawed, zklb learns of the expiry,
    # makes a new session and registers again.
    mark = z.log_mark()
    os.kill(z.pid, signal.SIGSTOP)
    try:
        wait_no_child(k, base + "/web", timeout=10)
    finally:
        os.kill(z.pid, signal.SIGCONT)
    id2, doc2, stat2 = wait_one_child(k, base + "/web", timeout=15)
    assert id2 == id1
    assert stat2.ephemeralOwner != stat1.ephemeralOwner
    assert doc2["registrationTimeUTC"] > doc1["registrationTimeUTC"]
    z.wait_for_log(r"zookeeper: .*-> expired", since=mark)
    z.wait_for_log(r"announce svc=web id=%s: registered" % id1, since=mark)


def test_announce_node_deleted_or_taken_by_another_client(shared_zookeeper, zk_path,
                                                         kazoo_client, backend, zklb):
    k = kazoo_client(shared_zookeeper.hosts)
    base = zk_path + "/services"
    b1 = backend("b1", mode="tag")
    z = zklb(services={}, zookeeper=zk_section(shared_zookeeper),
             announce=[announce_entry("web", base, b1.port)])
    id1, doc1, stat1 = wait_one_child(k, base + "/web")
    node = f"{base}/web/{id1}"

    # an operator deletes it: registered again at once (same id, same session)
    mark = z.log_mark()
    k.delete(node)
    stat2 = harness.wait_until(lambda: k.exists(node), 5, interval=0.01, what="re-created")
    assert stat2.ephemeralOwner == stat1.ephemeralOwner
    z.wait_for_log(r"was deleted by another client; registering again", since=mark)

    # someone else's node takes the path: replaced by ours, as Curator does
    mark = z.log_mark()
    tx = k.transaction()
    tx.delete(node)
    tx.create(node, b'{"not":"ours"}')
    tx.commit()
    z.wait_for_log(r"replaced a node at .* that our session did not own", since=mark)
    data, stat3 = k.get(node)
    assert stat3.ephemeralOwner == stat1.ephemeralOwner
    assert json.loads(data)["id"] == id1


def test_announce_reload_rewrites_removes_and_adds(shared_zookeeper, zk_path, kazoo_client,
                                                   backend, zklb):
    k = kazoo_client(shared_zookeeper.hosts)
    base = zk_path + "/services"
    b1 = backend("b1", mode="tag")
    b2 = backend("b2", mode="tag")
    z = zklb(services={}, zookeeper=zk_section(shared_zookeeper),
             announce=[announce_entry("web", base, b1.port, payload={"v": 1}),
                       announce_entry("web", base, b2.port)])
    harness.wait_until(lambda: len(children(k, base + "/web")) == 2, 10, what="two nodes")

    def by_port():
        out = {}
        for c in children(k, base + "/web"):
            doc = json.loads(k.get(f"{base}/web/{c}")[0])
            out[doc["port"]] = (c, doc)
        return out

    before = by_port()
    # b1's payload changes (same id, data rewritten); b2's entry is dropped (deregistered)
    cfg = dict(z.config)
    cfg["announce"] = [announce_entry("web", base, b1.port, payload={"v": 2})]
    z.reload(cfg)
    harness.wait_until(lambda: list(by_port()) == [b1.port] and
                       by_port()[b1.port][1]["payload"] == curator_map({"v": 2}), 10,
                       what="b1 rewritten, b2 deregistered")
    after = by_port()[b1.port]
    assert after[0] == before[b1.port][0]
    assert after[1]["registrationTimeUTC"] >= before[b1.port][1]["registrationTimeUTC"]
    # b2 back in the configuration: a new entry, a new id
    cfg = dict(z.config)
    cfg["announce"] = [announce_entry("web", base, b1.port, payload={"v": 2}),
                       announce_entry("web", base, b2.port)]
    z.reload(cfg)
    harness.wait_until(lambda: sorted(by_port()) == sorted([b1.port, b2.port]), 10,
                       what="b2 registered again")
    assert by_port()[b2.port][0] != before[b2.port][0]
    assert by_port()[b1.port][0] == before[b1.port][0]


def test_announce_withdrawn_before_drain(shared_zookeeper, zk_path, kazoo_client, backend,
                                         zklb):
    k = kazoo_client(shared_zookeeper.hosts)
    base = zk_path + "/services"
    b1 = backend("b1", mode="tag")
    svc = static_service([b1])
    z = zklb(services={"web": svc}, zookeeper=zk_section(shared_zookeeper),
             announce=[announce_entry("web", base, b1.port)], drain_timeout="10s")
    wait_one_child(k, base + "/web")

    # An open connection keeps zklb draining: the node must be gone while it still runs.
    held = hold(z.listen("web"), 1)
    try:
        mark = z.log_mark()
        z.send_signal(signal.SIGTERM)
        wait_no_child(k, base + "/web", timeout=3)
        assert z.running(), "zklb exited before the node was observed gone"
        z.wait_for_log(r"draining: no new connections", since=mark)
        log = z.log()[mark:]
        assert log.index("deregistered") < log.index("draining: no new connections"), log
    finally:
        close_all(held)
    assert z.wait(10) == 0


def test_end_to_end_announce_then_discover(shared_zookeeper, zk_path, kazoo_client, backend,
                                           zklb, tmp_path):
    k = kazoo_client(shared_zookeeper.hosts)
    base = zk_path + "/services"
    b1 = backend("b1", mode="tag")
    b2 = backend("b2", mode="tag")
    a = zklb(services={}, zookeeper=zk_section(shared_zookeeper), name="zklbA",
             cache_dir=str(tmp_path / "cacheA"),
             announce=[announce_entry("web", base, b1.port), announce_entry("web", base, b2.port)])
    listen = free_addr()
    b = zklb(services={"web": {"listen": listen,
                               "discovery": {"type": "curator", "path": base + "/web",
                                             "collapse_guard": 1}}},
             zookeeper=zk_section(shared_zookeeper), name="zklbB",
             cache_dir=str(tmp_path / "cacheB"))
    assert a.admin != b.admin
    harness.wait_until(lambda: len(children(k, base + "/web")) == 2, 10, what="two nodes")

    def pool():
        return sorted(f"{i['address']}:{i['port']}" for i in instances_of(b.services()["web"]))

    harness.wait_until(lambda: pool() == sorted([b1.address, b2.address]), 10,
                       what="B's pool holds both instances A announced")
    # least_conn breaks ties at random: connect until both answered.
    seen = tags_until(harness.split_addr(listen), {"b1", "b2"}, at_least=20)
    assert set(seen) == {"b1", "b2"}, seen

    # b1 stops: A deregisters it, B drops it from its pool, traffic goes to b2 only
    b1.stop()
    harness.wait_until(lambda: pool() == [b2.address], 10, what="B drops b1")
    assert tags(harness.split_addr(listen), 10) == {"b2": 10}
