"""Wire compatibility with Apache Curator itself (issue 20), both directions.

The other ZooKeeper tests write and read Curator's JSON with kazoo; here the other
side is Debian's Apache Curator 5.4 (tests/curator/CuratorProbe.java, driven through
curator.py): real ServiceDiscovery, ServiceProvider and ServiceCache objects.

  discovery  Curator registers (Map and class payloads, uriSpec, sslPort,
             updateService, unregisterService, session close, enabled=false with
             both serializers, DYNAMIC_SEQUENTIAL) and zklb routes to tag backends
             accordingly (pass today).
  announce   zklb announces and Curator reads: a Map reader, a ServiceProvider and
             a ServiceCache, which also see it withdrawn when its check fails and
             gone at SIGTERM (pass today).

What issue 20 changed, each with its test here:
  - what zklb writes is what Curator writes for the same payload: a Map payload
    with "@class":"java.util.LinkedHashMap" first, `payload_class` for a
    class-payload consumer (also a ServiceCache, and a mixed Java + zklb service),
    a list as ["java.util.ArrayList",[...]], an int64 as ["java.lang.Long",n],
    strings and int32 bare — read back equal by the matching Curator reader and
    by an Object reader;
  - a DYNAMIC_SEQUENTIAL instance's id is the JSON id; of two nodes for one id
    (Curator re-creates one after a reconnect) one is kept, logged and counted;
  - an sslPort-only instance on a service without tls is "unroutable", not bad;
  - instances ZooKeeper no longer lists, whose removal the collapse guard holds,
    are marked in /services and dropped at their first failure — refusing, or
    (in a network namespace the test creates) dropping packets — while the same
    hold over instances that still serve loses no connection.

One JVM serves the whole module; every wait is bounded; processes stop by PID.

    tests/run tests/integration/test_curator.py
"""

import ctypes
import ipaddress
import json
import os
import re
import shutil
import signal
import subprocess
import threading
import time

import pytest
from kazoo.exceptions import NoNodeError

import curator
import harness
from curator import CuratorError, CuratorProbe
from harness import ask_tag, free_addr, tags, tags_until, wait_until

pytestmark = pytest.mark.zookeeper

SVC = "web"
SESSION_TIMEOUT = "2s"
# announce checks: a probe every 100 ms, up after 2 passes, down after 2 failures.
CHECK = {"type": "tcp", "interval": "100ms", "timeout": "200ms", "rise": 2, "fall": 2}
PAYLOAD_CLASS = "zklbtest.InstanceDetails"   # defined in CuratorProbe.java


# --------------------------------------------------------------------------- fixtures


@pytest.fixture(scope="module")
def probe(tmp_path_factory):
    """One CuratorProbe JVM for the module (compiled once per build)."""
    why = curator.missing()
    if why:
        pytest.fail(f"Curator probe needs {why}: run tests/deps")
    p = CuratorProbe(tmp_path_factory.mktemp("curator-probe"))
    t0 = time.monotonic()
    p.start()
    print(f"\ncurator probe: Curator {p.version}, JVM ready in {p.start_seconds:.2f}s "
          f"(compile + start {time.monotonic() - t0:.2f}s)")
    yield p
    if p.first_open_seconds is not None:
        print(f"\ncurator probe: first ServiceDiscovery opened in {p.first_open_seconds:.2f}s "
              f"(class loading + ZooKeeper session)")
    p.stop()


@pytest.fixture
def apps(probe, shared_zookeeper, zk_path, request):
    """apps(payload='map'|'class', serializer='default'|'full') → a CuratorApp on the
    shared ZooKeeper with base path zk_path + '/services'; closed at teardown."""
    made = []

    def make(payload="map", **kw):
        a = probe.open(shared_zookeeper.hosts, zk_path + "/services", payload=payload, **kw)
        made.append(a)
        return a

    yield make
    for a in made:
        try:
            a.close()
        except (CuratorError, AssertionError):
            pass   # already closed by the test
    rep = getattr(request.node, "rep_call", None)
    if rep is not None and rep.failed:
        print(f"\n--- tail of {probe.log_path} ---\n{probe.log_tail(30)}")


# --------------------------------------------------------------------------- helpers


def zk_section(zk):
    return {"hosts": zk.hosts, "session_timeout": SESSION_TIMEOUT}


def curator_service(base):
    return {"listen": free_addr(), "connect_timeout": "1s", "retries": 2,
            "discovery": {"type": "curator", "path": f"{base}/{SVC}"}}


def router(zklb, zk, zk_path):
    """A zklb routing SVC from Curator nodes under zk_path/services."""
    return zklb(services={SVC: curator_service(zk_path + "/services")},
                zookeeper=zk_section(zk))


def service(lb):
    return harness.services_of(lb.admin_json("/services"))[SVC]


def ids(lb):
    return sorted(i["id"] for i in harness.instances_of(service(lb))
                  if i["state"] != "draining")


def wait_ids(lb, want, timeout=10.0):
    want = sorted(want)
    wait_until(lambda: ids(lb) == want, timeout, interval=0.02,
               what=f"zklb routing {want} (has {ids(lb)})")


def only_tags(addr, want, n=20):
    """n connections, every one answered by a tag in want."""
    seen = tags(addr, n)
    assert set(seen) <= set(want), f"expected only {sorted(want)}, got {dict(seen)}"
    return seen


def node_json(k, path):
    return json.loads(k.get(path)[0])


def announce_entry(base, port, payload=None, payload_class=None):
    e = {"service": SVC, "base_path": base, "address": "127.0.0.1", "port": port,
         "check": dict(CHECK)}
    if payload is not None:
        e["payload"] = payload
    if payload_class is not None:
        e["payload_class"] = payload_class
    return e


def announcer(zklb, zk, base, port, tmp_path, payload, typed=False):
    """A zklb announcing SVC at 127.0.0.1:port under base, with payload; typed=True
    adds payload_class zklbtest.InstanceDetails (the class-payload consumers' class)."""
    return zklb(services={}, zookeeper=zk_section(zk),
                announce=[announce_entry(base, port, payload,
                                         PAYLOAD_CLASS if typed else None)])


def curator_node(k, path, timeout=5.0):
    """The data of a node Curator registered. Its ServiceDiscovery re-registers on a
    CONNECTED event that may arrive just after registerService returned, and its
    re-registration deletes and creates the node again: read until it is there."""
    got = []

    def read():
        try:
            got[:] = [k.get(path)[0]]
            return True
        except NoNodeError:
            return False
    wait_until(read, timeout, what=f"Curator's node {path}")
    return got[0]


def ordered(data):
    """A node's JSON with every object as a list of (key, value) pairs: equality
    then includes key order, as bytes would, without depending on number format."""
    return json.loads(data, object_pairs_hook=list)


def wait_curator(read, want, what, timeout=10.0):
    """Poll read() (a Curator query → instance dicts) until want(instances) holds;
    → the instances. A CuratorError (Java threw) propagates at once."""
    last = []

    def ok():
        last[:] = [read()]
        return want(last[0])
    try:
        wait_until(ok, timeout, interval=0.05, what=what)
    except TimeoutError:
        raise AssertionError(f"{what}: Curator returns {last[0] if last else None}") from None
    return last[0]


def one(instances):
    return len(instances) == 1


def wait_announced(app, n=1, timeout=10.0):
    """Wait until n instance nodes of SVC exist (Curator's client lists them)."""
    return wait_until(lambda: len(app.nodes(SVC)) == n and app.nodes(SVC), timeout,
                      interval=0.05, what=f"{n} instance node(s) of {SVC}")


def cache_failure(errors, instances):
    """A CuratorError for what a ServiceCache's listeners logged (and what it serves)."""
    thrown = "; ".join(" <- ".join(e.get("thrown") or [e["message"]]) for e in errors)
    return CuratorError({"error": f"ServiceCache serves {curator.ids(instances)}; "
                                  f"listener errors: {thrown}", "trace": errors})


def wait_cache(app, want_ids, what, timeout=10.0):
    """Poll a ServiceCache until it serves want_ids; → its instances. Raises
    CuratorError at once if Curator logged listener errors (a cache that cannot
    read a node logs the exception and serves the rest, here nothing)."""
    want = sorted(want_ids)
    last = {}

    def ok():
        last.update(app.cache(SVC))
        # Curator's own complaints (its listener managers log what a listener threw);
        # the ZooKeeper client's connection chatter is not the cache's business.
        last["errors"] = [e for e in last["errors"]
                          if e["logger"].startswith("org.apache.curator")]
        return last["errors"] or curator.ids(last["instances"]) == want
    try:
        wait_until(ok, timeout, interval=0.05, what=what)
    except TimeoutError:
        raise AssertionError(f"{what}: ServiceCache serves {last.get('instances')}") from None
    if last["errors"]:
        raise cache_failure(last["errors"], last["instances"])
    return last["instances"]


# ===================================================================== discovery


def test_map_and_class_payloads_uri_spec_and_ssl_port_are_routed(
        shared_zookeeper, zk_path, apps, backend, zklb, kazoo_client):
    """Instances as Java applications register them — a Map payload, a payload
    class, a uriSpec, an sslPort beside the port — are all routed by zklb."""
    b1, b2, b3 = (backend(n, mode="tag") for n in ("b1", "b2", "b3"))
    maps, typed = apps("map"), apps("class")
    r1 = maps.register(SVC, "i1", "127.0.0.1", b1.port, payload={"zone": "a", "weight": 2})
    r2 = typed.register(SVC, "i2", "127.0.0.1", b2.port,
                        payload={"zone": "b", "weight": 3, "description": "typed"},
                        uriSpec="{scheme}://{address}:{port}/x")
    # sslPort set and the service has no tls: zklb uses the plain port.
    typed.register(SVC, "i3", "127.0.0.1", b3.port, sslPort=harness.free_port(),
                   payload={"zone": "c"})
    assert r1["nodes"] == ["i1"] and r2["nodes"] == ["i1", "i2"]
    assert r2["instance"]["uri"] == f"http://127.0.0.1:{b2.port}/x"

    # What Curator wrote is Curator's own format, "@class" and all.
    k = kazoo_client(shared_zookeeper.hosts)
    base = f"{zk_path}/services/{SVC}"
    assert node_json(k, f"{base}/i1")["payload"] == {"@class": "java.util.LinkedHashMap",
                                                     "zone": "a", "weight": 2}
    doc2 = node_json(k, f"{base}/i2")
    assert doc2["payload"]["@class"] == PAYLOAD_CLASS
    assert [p["value"] for p in doc2["uriSpec"]["parts"]] == ["scheme", "://", "address",
                                                              ":", "port", "/x"]

    lb = router(zklb, shared_zookeeper, zk_path)
    wait_ids(lb, ["i1", "i2", "i3"])
    seen = tags_until(lb.listen(SVC), {"b1", "b2", "b3"}, timeout=10)
    assert set(seen) == {"b1", "b2", "b3"}
    svc = service(lb)
    assert svc["bad_instances"] == 0 and svc["skipped_instances"] == 0, svc


def test_update_service_port_moves_traffic(shared_zookeeper, zk_path, apps, backend, zklb):
    b1, b2 = backend("b1", mode="tag"), backend("b2", mode="tag")
    app = apps("class")
    app.register(SVC, "i1", "127.0.0.1", b1.port, payload={"zone": "a"})
    lb = router(zklb, shared_zookeeper, zk_path)
    wait_ids(lb, ["i1"])
    only_tags(lb.listen(SVC), {"b1"}, n=5)

    r = app.update(SVC, "i1", "127.0.0.1", b2.port, payload={"zone": "a"})
    assert r["instance"]["port"] == b2.port
    def routed_ports():
        return sorted(i["port"] for i in harness.instances_of(service(lb))
                      if i["state"] != "draining")
    wait_until(lambda: routed_ports() == [b2.port], 10,
               what=f"zklb routes i1 at port {b2.port} only")
    assert ids(lb) == ["i1"]
    only_tags(lb.listen(SVC), {"b2"})
    assert curator.ids(app.query(SVC)) == ["i1"]


def test_unregister_service_removes_the_instance(shared_zookeeper, zk_path, apps, backend,
                                                 zklb):
    b1, b2 = backend("b1", mode="tag"), backend("b2", mode="tag")
    app = apps("map")
    app.register(SVC, "i1", "127.0.0.1", b1.port)
    app.register(SVC, "i2", "127.0.0.1", b2.port)
    lb = router(zklb, shared_zookeeper, zk_path)
    wait_ids(lb, ["i1", "i2"])
    tags_until(lb.listen(SVC), {"b1", "b2"}, timeout=10)

    assert app.unregister(SVC, "i2")["nodes"] == ["i1"]
    wait_ids(lb, ["i1"])
    only_tags(lb.listen(SVC), {"b1"})
    assert curator.ids(app.query(SVC)) == ["i1"]


def test_closing_the_curator_session_removes_its_instances(shared_zookeeper, zk_path, apps,
                                                          backend, zklb):
    """A Java application that goes away (its client closes; nothing unregisters):
    ZooKeeper drops its ephemeral nodes and zklb stops routing to them. One of three
    instances, so the collapse guard (more than half at once) is not involved."""
    b1, b2, b3 = (backend(n, mode="tag") for n in ("b1", "b2", "b3"))
    gone, stays = apps("map"), apps("map")
    gone.register(SVC, "i1", "127.0.0.1", b1.port)
    stays.register(SVC, "i2", "127.0.0.1", b2.port)
    stays.register(SVC, "i3", "127.0.0.1", b3.port)
    lb = router(zklb, shared_zookeeper, zk_path)
    wait_ids(lb, ["i1", "i2", "i3"])

    gone.close_session()
    wait_ids(lb, ["i2", "i3"])
    only_tags(lb.listen(SVC), {"b2", "b3"})
    assert curator.ids(stays.query(SVC)) == ["i2", "i3"]


def test_enabled_false_written_by_the_full_serializer_is_not_routed(
        shared_zookeeper, zk_path, apps, backend, zklb, kazoo_client):
    """Curator 5.4 writes "enabled" only with JsonInstanceSerializer(cls, false). Such
    an instance is skipped by Curator's ServiceProvider (not by queryForInstances), and
    zklb does not route it (/services counts it as skipped, not as bad); updateService
    with enabled=true brings it in."""
    b1, b2 = backend("b1", mode="tag"), backend("b2", mode="tag")
    app = apps("map", serializer="full")
    app.register(SVC, "on", "127.0.0.1", b1.port)
    app.register(SVC, "off", "127.0.0.1", b2.port, enabled=False)
    k = kazoo_client(shared_zookeeper.hosts)
    assert node_json(k, f"{zk_path}/services/{SVC}/off")["enabled"] is False

    # Curator: queryForInstances lists it, marked disabled; the provider leaves it out.
    listed = {i["id"]: i["enabled"] for i in app.query(SVC)}
    assert listed == {"on": True, "off": False}
    assert curator.ids(app.provider(SVC)["instances"]) == ["on"]

    lb = router(zklb, shared_zookeeper, zk_path)
    wait_ids(lb, ["on"])
    wait_until(lambda: service(lb)["skipped_instances"] == 1, 5, what="one skipped")
    assert service(lb)["bad_instances"] == 0
    lb.wait_for_log(r"node=off not routed: enabled is false")
    only_tags(lb.listen(SVC), {"b1"})

    app.update(SVC, "off", "127.0.0.1", b2.port, enabled=True)
    wait_ids(lb, ["off", "on"])
    tags_until(lb.listen(SVC), {"b1", "b2"}, timeout=10)
    # The provider's own ServiceCache follows the update asynchronously.
    wait_curator(lambda: app.provider(SVC)["instances"],
                 lambda insts: curator.ids(insts) == ["off", "on"], "provider lists both")


def test_enabled_false_with_the_default_serializer_is_lost_on_the_wire(
        shared_zookeeper, zk_path, apps, backend, zklb, kazoo_client):
    """ServiceDiscoveryBuilder's default serializer (Curator 5.4: "compatible" mode)
    writes no "enabled" field: enabled(false) never reaches ZooKeeper, so Curator
    itself reads the instance as enabled — and zklb routes it, in agreement."""
    b1 = backend("b1", mode="tag")
    app = apps("map")
    r = app.register(SVC, "off", "127.0.0.1", b1.port, enabled=False)
    k = kazoo_client(shared_zookeeper.hosts)
    assert "enabled" not in node_json(k, f"{zk_path}/services/{SVC}/off")
    assert r["instance"]["enabled"] is False  # the object registered...
    assert app.query(SVC)[0]["enabled"] is True   # ...and what Curator reads back
    assert curator.ids(app.provider(SVC)["instances"]) == ["off"]

    lb = router(zklb, shared_zookeeper, zk_path)
    wait_ids(lb, ["off"])
    only_tags(lb.listen(SVC), {"b1"}, n=5)


def sequential_setup(shared_zookeeper, zk_path, apps, backend, zklb):
    """Curator registers 'seq' as DYNAMIC_SEQUENTIAL. → (app, lb, nodes): usually one
    node, but Curator re-creates the node when its connection listener sees a
    (re)connection after the registration (a loaded machine can delay it), and the
    old one stays: zklb must route one instance either way."""
    b1 = backend("b1", mode="tag")
    app = apps("map")
    r = app.register(SVC, "seq", "127.0.0.1", b1.port, serviceType="DYNAMIC_SEQUENTIAL")
    nodes = r["nodes"]
    assert nodes and all(re.fullmatch(r"seq\d{10}", n) for n in nodes), nodes
    if len(nodes) > 1:
        print(f"\nCurator made {len(nodes)} nodes for one DYNAMIC_SEQUENTIAL instance: {nodes}")
    lb = router(zklb, shared_zookeeper, zk_path)
    wait_until(lambda: len(ids(lb)) == 1, 10, what="one instance routed")
    return app, lb, nodes


def test_dynamic_sequential_instance_is_routed(shared_zookeeper, zk_path, apps, backend,
                                               zklb):
    """Curator makes a DYNAMIC_SEQUENTIAL instance an EPHEMERAL_SEQUENTIAL node: the
    node name is the id plus a counter. zklb routes it."""
    app, lb, nodes = sequential_setup(shared_zookeeper, zk_path, apps, backend, zklb)
    only_tags(lb.listen(SVC), {"b1"}, n=5)
    insts = app.query(SVC)
    assert len(insts) == len(nodes), insts
    assert all(i["id"] == "seq" and i["serviceType"] == "DYNAMIC_SEQUENTIAL" for i in insts)


def test_dynamic_sequential_instance_id_is_the_json_id(shared_zookeeper, zk_path, apps,
                                                       backend, zklb):
    app, lb, nodes = sequential_setup(shared_zookeeper, zk_path, apps, backend, zklb)
    assert ids(lb) == ["seq"], f"zklb id {ids(lb)}, nodes {nodes}, Curator id 'seq'"


def ssl_only_setup(shared_zookeeper, zk_path, apps, backend, zklb):
    """'plain' has a port; 'tls-only' has only an sslPort (Curator writes "port":null)
    on a service without tls."""
    b1 = backend("b1", mode="tag")
    app = apps("map")
    app.register(SVC, "plain", "127.0.0.1", b1.port)
    app.register(SVC, "tls-only", "127.0.0.1", None, sslPort=harness.free_port())
    listed = {i["id"]: (i["port"], i["sslPort"]) for i in app.query(SVC)}
    assert listed["tls-only"][0] is None and listed["tls-only"][1], listed
    lb = router(zklb, shared_zookeeper, zk_path)
    wait_ids(lb, ["plain"])
    wait_until(lambda: service(lb)["skipped_instances"] == 1, 5, what="one not routed")
    return lb


def test_ssl_port_only_instance_is_not_routed_without_tls(shared_zookeeper, zk_path, apps,
                                                         backend, zklb):
    lb = ssl_only_setup(shared_zookeeper, zk_path, apps, backend, zklb)
    only_tags(lb.listen(SVC), {"b1"})
    lb.wait_for_log(r"node=tls-only .*no port \(only sslPort\), and the service has no tls")


def test_ssl_port_only_instance_is_not_counted_as_malformed(shared_zookeeper, zk_path, apps,
                                                            backend, zklb):
    """Curator reads such an instance fine; only this service (no tls) cannot use it:
    zklb lists it as unroutable, with the reason, and counts it apart from bad data."""
    lb = ssl_only_setup(shared_zookeeper, zk_path, apps, backend, zklb)
    svc = service(lb)
    assert svc["bad_instances"] == 0, svc
    assert svc["unroutable_instances"] == 1, svc
    (skip,) = svc["skipped"]
    assert (skip["node"], skip["kind"]) == ("tls-only", "unroutable"), skip
    assert "only sslPort" in skip["reason"], skip
    m = lb.metrics()
    assert m.value("zklb_discovery_unroutable_instances_total", service=SVC) == 1
    assert m.value("zklb_discovery_bad_instances_total", service=SVC) == 0


def test_dynamic_sequential_second_node_for_one_id_keeps_one(
        shared_zookeeper, zk_path, apps, backend, zklb, kazoo_client):
    """Curator re-creates a DYNAMIC_SEQUENTIAL node after a reconnect while the old
    one lives on: two nodes, one id. Here the two nodes are made from what Curator
    wrote (so their number does not depend on Curator's timing), one per backend.
    zklb keeps one (the newer registrationTimeUTC, else the later node), logs and
    counts the other once, and takes the other back when the kept one goes."""
    b1, b2 = backend("b1", mode="tag"), backend("b2", mode="tag")
    app = apps("map")
    r = app.register("ref", "seq", "127.0.0.1", b1.port, serviceType="DYNAMIC_SEQUENTIAL")
    k = kazoo_client(shared_zookeeper.hosts)
    base = f"{zk_path}/services"
    doc = json.loads(curator_node(k, f"{base}/ref/{r['nodes'][0]}"))
    assert doc["id"] == "seq" and doc["serviceType"] == "DYNAMIC_SEQUENTIAL", doc

    def node_for(port):
        return k.create(f"{base}/{SVC}/seq", json.dumps(dict(doc, port=port)).encode(),
                        sequence=True, ephemeral=True, makepath=True).rsplit("/", 1)[1]
    first = node_for(b1.port)
    later = node_for(b2.port)                     # same id and time, a later node
    assert later > first
    # Curator itself lists both, under one id.
    assert sorted((i["id"], i["port"]) for i in app.query(SVC)) == sorted([("seq", b1.port),
                                                                           ("seq", b2.port)])

    def routed_ports():
        return [i["port"] for i in harness.instances_of(service(lb)) if i["state"] != "draining"]
    lb = router(zklb, shared_zookeeper, zk_path)
    wait_until(lambda: routed_ports() == [b2.port], 10, what=f"the later node {later} routed")
    assert ids(lb) == ["seq"]
    only_tags(lb.listen(SVC), {"b2"}, n=5)
    lb.wait_for_log(rf"node={first} skipped: duplicate of id=seq; node {later} is kept")
    svc = service(lb)
    assert svc["duplicate_instances"] == 1 and svc["bad_instances"] == 0, svc
    assert [(x["node"], x["kind"]) for x in svc["skipped"]] == [(first, "duplicate")], svc
    assert lb.metrics().value("zklb_discovery_duplicate_instances_total", service=SVC) == 1

    # A newer registrationTimeUTC wins over the later node.
    k.set(f"{base}/{SVC}/{later}",
          json.dumps(dict(doc, port=b2.port,
                          registrationTimeUTC=doc["registrationTimeUTC"] - 1000)).encode())
    wait_until(lambda: routed_ports() == [b1.port], 10, what="the newer registration routed")
    only_tags(lb.listen(SVC), {"b1"}, n=5)
    assert service(lb)["duplicate_instances"] == 2   # the later node, at its new version

    k.delete(f"{base}/{SVC}/{later}")
    wait_until(lambda: service(lb)["skipped"] == [], 10, what="no duplicate left")
    assert ids(lb) == ["seq"] and service(lb)["duplicate_instances"] == 2
    only_tags(lb.listen(SVC), {"b1"}, n=5)


def scale_down_setup(zk, zk_path, apps, backend, zklb, backends=None):
    """i1 (stays) and i2, i3 (one Curator application that goes away): zklb routes
    all three, then the application's session closes — one ZooKeeper change drops two
    of three nodes, which the collapse guard (0.5, 30 s) holds. → (lb, b1, b2, b3)."""
    b1, b2, b3 = backends or [backend(n, mode="tag") for n in ("b1", "b2", "b3")]
    stays, leaves = apps("map"), apps("map")
    stays.register(SVC, "i1", b1.host, b1.port)
    leaves.register(SVC, "i2", b2.host, b2.port)
    leaves.register(SVC, "i3", b3.host, b3.port)
    lb = router(zklb, zk, zk_path)
    wait_ids(lb, ["i1", "i2", "i3"])
    tags_until(lb.listen(SVC), {"b1", "b2", "b3"}, timeout=10)

    leaves.close_session()
    wait_until(lambda: curator.ids(stays.query(SVC)) == ["i1"], 10, what="ZooKeeper lists i1")
    wait_until(lambda: service(lb)["holding"], 5, what="zklb holds the removal")
    insts = {i["id"]: i for i in harness.instances_of(service(lb))}
    assert ids(lb) == ["i1", "i2", "i3"], insts
    for i in ("i2", "i3"):
        assert insts[i]["held"] == "removed" and 0 < insts[i]["hold_ends_in_ms"] <= 30000, insts
    assert "held" not in insts["i1"], insts
    return lb, b1, b2, b3


def connect_failures(lb, *bs):
    m = lb.metrics()
    return {b.name: m.value(harness.METRIC["connect_failures"], service=SVC,
                            backend=b.address) or 0 for b in bs}


def test_removed_and_stopped_instances_take_no_more_attempts(shared_zookeeper, zk_path, apps,
                                                            backend, zklb):
    """A Curator application with two of three instances goes away, and the collapse
    guard holds that removal for collapse_hold; then those two backends stop and
    refuse. An instance that ZooKeeper no longer lists and that fails is dropped at
    its first failure, whatever max_ejected_percent (50: one of three) says: 30
    clients cost at most one failed first attempt per stopped instance."""
    lb, b1, b2, b3 = scale_down_setup(shared_zookeeper, zk_path, apps, backend, zklb)
    b2.stop()
    b3.stop()
    seen = tags(lb.listen(SVC), 30)
    assert seen == {"b1": 30}, seen   # retries hide the failures from clients
    failed = connect_failures(lb, b2, b3)
    print(f"\nscale-down: first attempts on removed, stopped instances: {failed}")
    assert all(n <= 1 for n in failed.values()), f"connect failures on removed instances: {failed}"
    insts = {i["id"]: i for i in harness.instances_of(service(lb))}
    dropped = sorted(i for i, x in insts.items() if x["state"] == "dropped")
    assert dropped == sorted(f"i{b.name[1]}" for b in (b2, b3) if failed[b.name]), insts
    assert lb.metrics().value("zklb_service_held_drops_total", service=SVC) == len(dropped)
    lb.wait_for_log(r"be=127\.0\.0\.1:\d+ id=i[23] dropped after .*ZooKeeper lists it as removed")
    assert service(lb)["panic"] is False


def test_held_removal_of_instances_that_still_serve_loses_no_connection(
        shared_zookeeper, zk_path, apps, backend, zklb):
    """The case the collapse guard is for: the registrar's session goes, the instances
    keep serving. Held, they keep taking traffic and nothing fails or is dropped."""
    lb, b1, b2, b3 = scale_down_setup(shared_zookeeper, zk_path, apps, backend, zklb)
    seen = tags_until(lb.listen(SVC), {"b1", "b2", "b3"}, timeout=10, at_least=30)
    assert set(seen) == {"b1", "b2", "b3"}, seen
    assert connect_failures(lb, b1, b2, b3) == {"b1": 0, "b2": 0, "b3": 0}
    svc = service(lb)
    assert svc["connections_failed"] == 0, svc
    assert all(i["state"] == "healthy" for i in harness.instances_of(svc)), svc
    assert (lb.metrics().value("zklb_service_held_drops_total", service=SVC) or 0) == 0


class NetNs:
    """A network namespace this test creates, joined to ours by a veth pair: host_ip
    here, ns_ip there (a /30 of 198.18.0.0/15, the range set aside for testing
    networks). backend() listens in it; drop_replies() makes it a host that answers
    nothing (its packets to us are blackholed). Needs root."""

    CLONE_NEWNET = 0x40000000

    def __init__(self):
        pid = os.getpid()
        self.name = f"zklbtest{pid}"
        self.veth = f"zkv{pid % 10_000_000}"
        used = self._ip("-4", "-o", "addr", "show").stdout
        block = pid % 32768
        while True:
            net = ipaddress.ip_network("198.18.0.0/15").network_address + block * 4
            self.host_ip, self.ns_ip = str(net + 1), str(net + 2)
            if f" {self.host_ip}/" not in used:
                break
            block = (block + 1) % 32768
        self.backends = []

    @staticmethod
    def _ip(*args):
        return subprocess.run(["ip", *args], capture_output=True, text=True, timeout=10,
                              check=True)

    def create(self):
        self._ip("netns", "add", self.name)
        try:
            self._ip("link", "add", self.veth + "h", "type", "veth", "peer", "name",
                     self.veth + "n")
            self._ip("link", "set", self.veth + "n", "netns", self.name)
            self._ip("addr", "add", self.host_ip + "/30", "dev", self.veth + "h")
            self._ip("link", "set", self.veth + "h", "up")
            self._ip("-n", self.name, "addr", "add", self.ns_ip + "/30", "dev", self.veth + "n")
            self._ip("-n", self.name, "link", "set", self.veth + "n", "up")
            self._ip("-n", self.name, "link", "set", "lo", "up")
        except BaseException:
            self.delete()
            raise
        return self

    def backend(self, name):
        """A tag Backend listening on ns_ip, its socket made inside the namespace (a
        thread that joins it with setns(2); the socket stays there)."""
        box = {}

        def inside():
            fd = os.open(f"/run/netns/{self.name}", os.O_RDONLY)
            try:
                libc = ctypes.CDLL(None, use_errno=True)
                if libc.setns(fd, self.CLONE_NEWNET) != 0:
                    raise OSError(ctypes.get_errno(), f"setns {self.name}")
                box["b"] = harness.Backend(name, "tag", host=self.ns_ip).start()
            except BaseException as e:
                box["error"] = e
            finally:
                os.close(fd)
        t = threading.Thread(target=inside)
        t.start()
        t.join(10)
        if "error" in box:
            raise box["error"]
        self.backends.append(box["b"])
        return box["b"]

    def drop_replies(self):
        """Whatever the namespace sends us (SYN-ACK, RST) is discarded: a dead host."""
        self._ip("-n", self.name, "route", "add", "blackhole", self.host_ip + "/32")

    def delete(self):
        for b in self.backends:
            b.stop()
        # The veth pair goes with the namespace that holds one end.
        subprocess.run(["ip", "netns", "del", self.name], capture_output=True, timeout=10)
        subprocess.run(["ip", "link", "del", self.veth + "h"], capture_output=True, timeout=10)


@pytest.fixture
def netns():
    if os.geteuid() != 0:
        pytest.skip("creating a network namespace needs root (CI runs the suite as root)")
    if not shutil.which("ip"):
        pytest.skip("needs iproute2's ip to create a network namespace")
    ns = NetNs().create()
    yield ns
    ns.delete()


def test_removed_instances_that_drop_packets_cost_one_wait_each(shared_zookeeper, zk_path,
                                                              apps, backend, zklb, netns):
    """The scale-down on a real network, where a stopped host answers nothing: i2 and
    i3 live in a network namespace whose replies are then blackholed, so a connect to
    them waits out connect_timeout (1 s). Each stopped instance costs that wait once —
    its first failure drops it — and no later connection waits on it."""
    backends = [backend("b1", mode="tag"), netns.backend("b2"), netns.backend("b3")]
    lb, b1, b2, b3 = scale_down_setup(shared_zookeeper, zk_path, apps, backend, zklb,
                                      backends=backends)
    b2.stop()
    b3.stop()
    netns.drop_replies()
    t0 = time.monotonic()
    seen = tags(lb.listen(SVC), 30, timeout=10)
    took = time.monotonic() - t0
    assert seen == {"b1": 30}, seen
    failed = connect_failures(lb, b2, b3)
    print(f"\nscale-down, dropping packets: 30 connections in {took:.2f}s; "
          f"connect timeouts on removed instances: {failed}")
    assert all(n <= 1 for n in failed.values()), failed
    for b in (b2, b3):
        if failed[b.name]:
            lb.wait_for_log(rf"be={re.escape(b.address)} id=i\d dropped after connect timeout")
    insts = {i["id"]: i for i in harness.instances_of(service(lb))}
    assert {i: x["state"] for i, x in insts.items() if x["state"] == "dropped"} == {
        f"i{b.name[1]}": "dropped" for b in (b2, b3) if failed[b.name]}, insts


# ===================================================================== announce


def test_announce_read_by_map_reader_provider_and_cache(
        shared_zookeeper, zk_path, apps, backend, zklb):
    """zklb announces; a Map-payload Curator consumer reads it with queryForInstances,
    a ServiceProvider and a ServiceCache; the cache sees it withdrawn when the check
    fails, back when it passes, and gone at SIGTERM."""
    base = zk_path + "/services"
    b1 = backend("b1", mode="tag")
    reader = apps("map")
    z = zklb(services={}, zookeeper=zk_section(shared_zookeeper),
             announce=[announce_entry(base, b1.port, {"zone": "a", "weight": 3})])

    wait_announced(reader)
    insts = wait_curator(lambda: reader.query(SVC), one, "announced instance")
    (inst,) = insts
    assert (inst["name"], inst["address"], inst["port"]) == (SVC, "127.0.0.1", b1.port)
    assert inst["sslPort"] is None and inst["enabled"] is True
    assert inst["serviceType"] == "DYNAMIC"
    assert inst["payloadClass"] == "java.util.LinkedHashMap"
    assert inst["payload"] == {"zone": "a", "weight": 3}
    the_id = inst["id"]
    assert reader.query_one(SVC, the_id)["port"] == b1.port
    p = reader.provider(SVC)
    assert p["picked"]["id"] == the_id and curator.ids(p["instances"]) == [the_id]
    # Curator's consumers really reach it: connect where Curator says.
    assert ask_tag(f"{inst['address']}:{inst['port']}") == "b1"

    assert curator.ids(wait_cache(reader, [the_id], "cache lists it")) == [the_id]
    b1.stop()
    wait_cache(reader, [], "cache drops it after the check fails")
    b1.restart()
    wait_cache(reader, [the_id], "cache lists it again")
    z.stop(signal.SIGTERM)
    wait_cache(reader, [], "cache drops it at zklb's SIGTERM")
    assert reader.query(SVC) == []


def test_announce_read_by_class_reader(shared_zookeeper, zk_path, apps, backend, zklb,
                                       tmp_path):
    base = zk_path + "/services"
    b1 = backend("b1", mode="tag")
    reader = apps("class")
    announcer(zklb, shared_zookeeper, base, b1.port, tmp_path,
              {"zone": "a", "weight": 3}, typed=True)
    wait_announced(reader)

    (inst,) = reader.query(SVC)
    assert inst["payloadClass"] == PAYLOAD_CLASS
    assert inst["payload"]["zone"] == "a" and inst["payload"]["weight"] == 3
    assert inst["port"] == b1.port


def test_announce_read_by_class_service_cache(shared_zookeeper, zk_path, apps, backend,
                                              zklb, tmp_path):
    base = zk_path + "/services"
    b1 = backend("b1", mode="tag")
    reader = apps("class")
    reader.cache(SVC)   # started before the instance exists, as a long-lived consumer's
    announcer(zklb, shared_zookeeper, base, b1.port, tmp_path,
              {"zone": "a", "weight": 3}, typed=True)
    (node,) = wait_announced(reader)
    (inst,) = wait_cache(reader, [node], "class ServiceCache lists zklb's instance")
    assert inst["payloadClass"] == PAYLOAD_CLASS and inst["payload"]["zone"] == "a"


def test_announce_mixed_service_read_by_class_consumer(shared_zookeeper, zk_path, apps,
                                                       backend, zklb, tmp_path):
    base = zk_path + "/services"
    b1, b2 = backend("b1", mode="tag"), backend("b2", mode="tag")
    java = apps("class")
    consumer = apps("class")
    java.register(SVC, "java-1", "127.0.0.1", b2.port, payload={"zone": "j", "weight": 1})
    assert curator.ids(consumer.query(SVC)) == ["java-1"]

    announcer(zklb, shared_zookeeper, base, b1.port, tmp_path,
              {"zone": "a", "weight": 3}, typed=True)
    wait_announced(consumer, 2)
    insts = consumer.query(SVC)
    assert len(insts) == 2
    assert all(i["payloadClass"] == PAYLOAD_CLASS for i in insts)
    by_port = {i["port"]: i for i in insts}
    assert set(by_port) == {b1.port, b2.port}


# (Curator reader, payload, payload_class, the Java class Curator makes of it)
PAYLOADS = [
    ("map", {"zone": "a", "weight": 3, "rack": {"row": 2, "tags": ["x"]}}, None,
     "java.util.LinkedHashMap"),
    ("class", {"zone": "a", "weight": 3, "description": "typed"}, PAYLOAD_CLASS, PAYLOAD_CLASS),
    ("list", ["a", "b", {"c": 1}], None, "java.util.ArrayList"),
    ("string", "text", None, "java.lang.String"),
    ("integer", 42, None, "java.lang.Integer"),
    ("long", 5_000_000_000, None, "java.lang.Long"),
]


@pytest.mark.parametrize("kind,payload,payload_class,java", PAYLOADS,
                         ids=[p[0] for p in PAYLOADS])
def test_announce_writes_what_curator_writes(shared_zookeeper, zk_path, apps, backend, zklb,
                                             kazoo_client, kind, payload, payload_class,
                                             java):
    """For the same payload, the node zklb writes has Curator's fields in Curator's
    order and the payload exactly as Curator writes it — type id, nesting and key
    order — and Curator's reader of that payload type reads both the same way."""
    base = zk_path + "/services"
    app = apps(kind)
    app.register("ref", "r1", "127.0.0.1", 9, payload=payload)
    k = kazoo_client(shared_zookeeper.hosts)
    theirs = ordered(curator_node(k, f"{base}/ref/r1"))

    b1 = backend("b1", mode="tag")
    zklb(services={}, zookeeper=zk_section(shared_zookeeper),
         announce=[announce_entry(base, b1.port, payload, payload_class)])
    (node,) = wait_announced(app)
    ours = ordered(k.get(f"{base}/{SVC}/{node}")[0])
    print(f"\nCurator: {dict(theirs)['payload']}\nzklb:    {dict(ours)['payload']}")
    assert [key for key, _ in ours] == [key for key, _ in theirs]
    assert dict(ours)["payload"] == dict(theirs)["payload"]

    (ref,) = app.query("ref")
    (inst,) = app.query(SVC)
    assert (inst["payloadClass"], inst["payload"]) == (ref["payloadClass"], ref["payload"])
    assert inst["payloadClass"] == java and inst["port"] == b1.port


def test_announce_read_by_object_reader_as_curator_types(shared_zookeeper, zk_path, apps,
                                                         backend, zklb):
    """A consumer built with builder(Object.class) reads every kind of payload zklb
    writes, each as the Java type Jackson makes of it (the class one included)."""
    base = zk_path + "/services"
    b1 = backend("b1", mode="tag")
    extra = [("real", 1.5, None, "java.lang.Double"), ("bool", True, None, "java.lang.Boolean")]
    entries = [dict(announce_entry(base, b1.port, payload, cls), service=f"p-{kind}")
               for kind, payload, cls, _ in PAYLOADS + extra]
    zklb(services={}, zookeeper=zk_section(shared_zookeeper), announce=entries)
    reader = apps("object")
    for kind, payload, _, java in PAYLOADS + extra:
        (inst,) = wait_curator(lambda: reader.query(f"p-{kind}"), one, f"p-{kind} announced")
        assert inst["payloadClass"] == java, (kind, inst)
        assert inst["payload"] == payload, (kind, inst)


def test_payload_class_refused_by_check_with_the_reason(tmp_path):
    """A payload_class needs a mapping payload; zklb check says why, at the key."""
    cfg = harness.zklb_config({}, zookeeper={"hosts": "127.0.0.1:1"},
                              announce=[announce_entry("/services", 9, ["a"], PAYLOAD_CLASS)])
    f = tmp_path / "bad.yaml"
    f.write_text(harness.to_yaml(cfg))
    r = harness.run_zklb(["check", "-c", str(f)])
    assert r.returncode != 0, r
    assert "payload_class: needs payload: a mapping" in r.stdout + r.stderr, r


@pytest.mark.parametrize("kind,value,java", [("string", "text", "java.lang.String"),
                                              ("integer", 42, "java.lang.Integer")])
def test_announce_scalar_payload_read_by_matching_reader(shared_zookeeper, zk_path, apps,
                                                         backend, zklb, kazoo_client,
                                                         kind, value, java):
    """Jackson writes String and Integer payloads bare (no type id), so zklb's bare
    scalar is byte-for-byte what Curator writes, and a String / Integer consumer
    reads it. (Map and class consumers cannot read either one: Curator's too.)"""
    base = zk_path + "/services"
    reader = apps(kind)
    reader.register("ref", "r1", "127.0.0.1", 9, payload=value)
    k = kazoo_client(shared_zookeeper.hosts)
    assert node_json(k, f"{base}/ref/r1")["payload"] == value

    b1 = backend("b1", mode="tag")
    zklb(services={}, zookeeper=zk_section(shared_zookeeper),
         announce=[announce_entry(base, b1.port, value)])
    (node,) = wait_announced(reader)
    assert node_json(k, f"{base}/{SVC}/{node}")["payload"] == value
    (inst,) = reader.query(SVC)
    assert (inst["payloadClass"], inst["payload"], inst["port"]) == (java, value, b1.port)


def test_announce_list_payload_is_refused_or_readable(shared_zookeeper, zk_path, apps,
                                                      backend, zklb, tmp_path,
                                                      kazoo_client):
    """Either zklb check refuses a list payload with the reason, or a Curator consumer
    of a List payload reads what zklb announces."""
    base = zk_path + "/services"
    # What Curator itself writes for a List payload:
    lists = apps("list")
    lists.register("ref", "r1", "127.0.0.1", 9, payload=["a", "b"])
    k = kazoo_client(shared_zookeeper.hosts)
    assert node_json(k, f"{base}/ref/r1")["payload"] == ["java.util.ArrayList", ["a", "b"]]

    b1 = backend("b1", mode="tag")
    entry = announce_entry(base, b1.port, ["a", "b"])
    cfg = harness.zklb_config({}, zookeeper=zk_section(shared_zookeeper), announce=[entry])
    f = tmp_path / "list-payload.yaml"
    f.write_text(harness.to_yaml(cfg))
    r = harness.run_zklb(["check", "-c", str(f)])
    if r.returncode != 0:
        assert "payload" in r.stdout + r.stderr, r
        return
    zklb(services={}, zookeeper=zk_section(shared_zookeeper), announce=[entry])
    wait_announced(lists)
    (inst,) = lists.query(SVC)
    assert inst["payload"] == ["a", "b"] and inst["payloadClass"] == "java.util.ArrayList"
