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

Strict xfails, each naming what issue 20 changes — un-xfail a test with its fix:
  - class-payload reader, class-payload ServiceCache, and a mixed service (Java +
    zklb instances) read by a class-payload consumer: no "@class" in what zklb
    writes → ClassCastException for the whole service. They announce with
    `payload_class: zklbtest.InstanceDetails` as soon as `zklb check` accepts it;
  - a list payload: accepted by zklb check, unreadable by any Curator reader
    (string and integer payloads are fine: Jackson writes them bare too);
  - a DYNAMIC_SEQUENTIAL instance's id in zklb is the node name, not the JSON id;
  - an sslPort-only instance on a service without tls counts as malformed;
  - removed-then-stopped instances keep taking first attempts (collapse hold +
    max_ejected_percent).

One JVM serves the whole module; every wait is bounded; processes stop by PID.

    tests/run tests/integration/test_curator.py
"""

import json
import re
import signal
import time

import pytest

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


_payload_class_ok = None


def announce_payload_class_supported(tmp_path):
    """Does this zklb accept announce.payload_class (issue 20)? Asked once with
    `zklb check`. Today it does not (an unknown key is an error), so the class-reader
    tests announce without it, which is exactly what a Java consumer meets today."""
    global _payload_class_ok
    if _payload_class_ok is None:
        cfg = harness.zklb_config({}, zookeeper={"hosts": "127.0.0.1:1"},
                                  announce=[announce_entry("/services", 9, {"zone": "a"},
                                                           PAYLOAD_CLASS)])
        f = tmp_path / "payload-class-check.yaml"
        f.write_text(harness.to_yaml(cfg))
        r = harness.run_zklb(["check", "-c", str(f)])
        _payload_class_ok = r.returncode == 0
        if not _payload_class_ok:
            print(f"\nzklb check refuses payload_class today: {r.stdout}{r.stderr}".rstrip())
    return _payload_class_ok


def announcer(zklb, zk, base, port, tmp_path, payload, typed=False):
    """A zklb announcing SVC at 127.0.0.1:port under base, with payload; typed=True
    asks for payload_class zklbtest.InstanceDetails when this zklb knows the key."""
    pc = PAYLOAD_CLASS if typed and announce_payload_class_supported(tmp_path) else None
    return zklb(services={}, zookeeper=zk_section(zk),
                announce=[announce_entry(base, port, payload, pc)])


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
    b1 = backend("b1", mode="tag")
    app = apps("map")
    r = app.register(SVC, "seq", "127.0.0.1", b1.port, serviceType="DYNAMIC_SEQUENTIAL")
    (node,) = r["nodes"]
    lb = router(zklb, shared_zookeeper, zk_path)
    wait_until(lambda: len(ids(lb)) == 1, 10, what="one instance routed")
    return app, lb, node


def test_dynamic_sequential_instance_is_routed(shared_zookeeper, zk_path, apps, backend,
                                               zklb):
    """Curator makes a DYNAMIC_SEQUENTIAL instance an EPHEMERAL_SEQUENTIAL node: the
    node name is the id plus a counter. zklb routes it."""
    app, lb, node = sequential_setup(shared_zookeeper, zk_path, apps, backend, zklb)
    assert re.fullmatch(r"seq\d{10}", node), node
    only_tags(lb.listen(SVC), {"b1"}, n=5)
    (inst,) = app.query(SVC)
    assert inst["id"] == "seq" and inst["serviceType"] == "DYNAMIC_SEQUENTIAL"


@pytest.mark.xfail(strict=True, reason="issue 20: zklb takes a DYNAMIC_SEQUENTIAL "
                   "instance's id from the node name (seq0000000000), Curator from the JSON id")
def test_dynamic_sequential_instance_id_is_the_json_id(shared_zookeeper, zk_path, apps,
                                                       backend, zklb):
    app, lb, node = sequential_setup(shared_zookeeper, zk_path, apps, backend, zklb)
    assert ids(lb) == ["seq"], f"zklb id {ids(lb)}, node {node}, Curator id 'seq'"


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


@pytest.mark.xfail(strict=True, reason="issue 20: an sslPort-only instance on a service "
                   "without tls is counted as malformed (bad_instances), not as not routable")
def test_ssl_port_only_instance_is_not_counted_as_malformed(shared_zookeeper, zk_path, apps,
                                                            backend, zklb):
    lb = ssl_only_setup(shared_zookeeper, zk_path, apps, backend, zklb)
    svc = service(lb)
    assert svc["bad_instances"] == 0, svc


@pytest.mark.xfail(strict=True, reason="issue 20: a deliberate removal (ZooKeeper no longer "
                   "lists the instances) is held by the collapse guard, and with "
                   "max_ejected_percent one stopped instance stays healthy and keeps taking "
                   "first attempts")
def test_removed_and_stopped_instances_take_no_more_attempts(shared_zookeeper, zk_path, apps,
                                                            backend, zklb):
    """A Curator application with two of three instances goes away (one ZooKeeper
    event drops both nodes, so the collapse guard holds the change for collapse_hold),
    then those two backends stop and refuse. An instance that ZooKeeper no longer lists
    and that fails should be dropped at its first failure: 30 clients cost at most one
    failed first attempt per stopped instance. Today the hold keeps both in the pool
    and max_ejected_percent (50) lets only one of three be ejected."""
    b1, b2, b3 = (backend(n, mode="tag") for n in ("b1", "b2", "b3"))
    stays, leaves = apps("map"), apps("map")
    stays.register(SVC, "i1", "127.0.0.1", b1.port)
    leaves.register(SVC, "i2", "127.0.0.1", b2.port)
    leaves.register(SVC, "i3", "127.0.0.1", b3.port)
    lb = router(zklb, shared_zookeeper, zk_path)
    wait_ids(lb, ["i1", "i2", "i3"])

    leaves.close_session()
    wait_until(lambda: curator.ids(stays.query(SVC)) == ["i1"], 10, what="ZooKeeper lists i1")
    wait_until(lambda: service(lb)["held_changes"] >= 1 or ids(lb) == ["i1"], 5,
               what="zklb saw the removal (held or applied)")
    b2.stop()
    b3.stop()
    seen = tags(lb.listen(SVC), 30)
    assert seen == {"b1": 30}, seen   # retries hide the failures from clients, today too
    m = lb.metrics()
    failed = {b.name: m.value(harness.METRIC["connect_failures"], service=SVC,
                              backend=b.address) or 0 for b in (b2, b3)}
    print(f"\nscale-down: first attempts on removed, stopped instances: {failed}")
    assert sum(failed.values()) <= 2, f"connect failures on removed instances: {failed}"


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


@pytest.mark.xfail(strict=True, raises=CuratorError,
                   reason="issue 20: zklb writes the payload without Jackson's \"@class\" "
                   "(and has no payload_class), so a payload-class consumer's "
                   "queryForInstances throws ClassCastException")
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


@pytest.mark.xfail(strict=True, raises=CuratorError,
                   reason="issue 20: a payload-class ServiceCache cannot deserialize what "
                   "zklb announces (no \"@class\"): its listener logs ClassCastException "
                   "and the cache serves an empty list")
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


@pytest.mark.xfail(strict=True, raises=CuratorError,
                   reason="issue 20: one zklb-announced instance without \"@class\" makes a "
                   "payload-class consumer's queryForInstances throw for the whole service, "
                   "so it loses the Java-registered instance too")
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


@pytest.mark.xfail(strict=True, raises=CuratorError,
                   reason="issue 20: a list payload passes zklb check and is written as a "
                   "bare JSON array, which no Curator reader deserializes (Curator writes "
                   "[\"java.util.ArrayList\", [...]])")
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
