"""Backends named by host names, through the real zklb binary.

zklb runs in a mount namespace of its own whose /etc/resolv.conf names a DNS
server of the test's (harness.DnsServer on 127.53.0.1:53), so each name
resolves when, to what, and as slowly as the test says. Covered:

  - a static backend named by a host name is resolved at load and served;
  - discovered instances named by host names are resolved off the control
    thread: while a lookup takes 3 s, the admin API answers, other instances
    (literal and quickly resolved ones) serve, and a ZooKeeper change applies;
    the slow one shows `resolving` and serves once its answer comes;
  - a name that does not resolve yet is retried (1 s, doubling) and served
    once DNS knows it; failures are logged once and counted;
  - a service of many names whose server never answers holds at most its
    max_lookups lookups, each given up at lookup_timeout: another service's
    name resolves at once;
  - allow_hostnames false (Curator's default) refuses names: listed in
    /services as hostname_not_allowed, counted, never asked of DNS.
"""

import json
import re
import time
from collections import Counter

from harness import ask_tag, free_addr, instances_of, static_service, wait_until

SVC = "web"


def curator(id_, host, port):
    return json.dumps({"name": SVC, "id": id_, "address": host, "port": port,
                       "sslPort": None, "payload": None,
                       "registrationTimeUTC": int(time.time() * 1000),
                       "serviceType": "DYNAMIC", "uriSpec": None}).encode()


def states(lb):
    return {i["id"]: i["state"] for i in instances_of(lb.services()[SVC])}


def lookups(lb, result):
    return lb.metrics().value("zklb_resolver_lookups_total", result=result) or 0


def tags(addr, n):
    return Counter(ask_tag(addr, timeout=3) for _ in range(n))


def discovering_lb(zklb, dns, zookeeper, path):
    """zklb discovering SVC from Curator nodes under path, with dns as its DNS
    (Curator names need allow_hostnames: true)."""
    return zklb(services={SVC: {"listen": free_addr(), "connect_timeout": "1s",
                                "discovery": {"type": "curator", "path": path,
                                              "allow_hostnames": True}}},
                zookeeper={"hosts": zookeeper.hosts, "session_timeout": "4s"},
                resolv_conf=dns.resolv_conf)


def test_static_backend_host_name(backend, dns, zklb):
    """A static backend named by a host name is resolved when the file is loaded."""
    b1 = backend("b1", "tag")
    dns.add("b1.zklb.test", "127.0.0.1")
    lb = zklb(services={SVC: static_service([f"b1.zklb.test:{b1.port}"])},
              resolv_conf=dns.resolv_conf)
    assert tags(lb.listen(SVC), 5) == Counter({"b1": 5})
    assert dns.queries["b1.zklb.test"] >= 1
    assert states(lb) == {f"b1.zklb.test:{b1.port}": "healthy"}


def test_slow_dns_blocks_nothing(backend, dns, shared_zookeeper, kazoo_client, zk_path, zklb):
    """One instance's name takes 3 s to resolve. Meanwhile the admin API answers,
    the other instances serve, and an instance added in ZooKeeper is routed: the
    lookup runs off the control thread. Then the slow one serves too."""
    k = kazoo_client(shared_zookeeper.hosts)
    b = {n: backend(n, "tag") for n in ("lit", "fast", "slow", "late")}
    dns.add("fast.zklb.test", "127.0.0.1")
    dns.add("slow.zklb.test", "127.0.0.1", delay=3.0)
    k.create(f"{zk_path}/lit", curator("lit", "127.0.0.1", b["lit"].port), makepath=True)
    k.create(f"{zk_path}/fast", curator("fast", "fast.zklb.test", b["fast"].port))
    k.create(f"{zk_path}/slow", curator("slow", "slow.zklb.test", b["slow"].port))
    lb = discovering_lb(zklb, dns, shared_zookeeper, zk_path)
    t0 = time.monotonic()
    addr = lb.listen(SVC)
    wait_until(lambda: states(lb).get("fast") == "healthy", 2, what="fast resolved")
    assert states(lb)["slow"] == "resolving"

    # The control thread is free: admin answers, and a new instance applies.
    t1 = time.monotonic()
    lb.metrics()
    admin_s = time.monotonic() - t1
    k.create(f"{zk_path}/late", curator("late", "127.0.0.1", b["late"].port))
    wait_until(lambda: states(lb).get("late") == "healthy", 1.5, what="late routed")
    assert set(tags(addr, 30)) == {"lit", "fast", "late"}
    assert states(lb)["slow"] == "resolving", "resolved before DNS answered?"
    assert time.monotonic() - t0 < 3.0, "the checks above outlasted the DNS delay"
    print(f"\nadmin answered in {admin_s * 1000:.1f} ms during a 3 s lookup")

    wait_until(lambda: states(lb)["slow"] == "healthy", 5, what="slow resolved")
    print(f"slow instance routable {time.monotonic() - t0:.2f} s after start (DNS: 3 s)")
    assert set(tags(addr, 40)) == {"lit", "fast", "late", "slow"}
    lb.wait_for_log(r"be=slow\.zklb\.test:\d+ resolved to 127\.0\.0\.1:\d+")
    assert lookups(lb, "ok") == 2 and lookups(lb, "failed") == 0
    assert lb.metrics().value("zklb_resolver_pending") == 0


def test_unknown_name_is_retried(backend, dns, shared_zookeeper, kazoo_client, zk_path, zklb):
    """A name DNS does not know yet: not routable, logged once, retried with
    backoff; served once DNS knows it."""
    k = kazoo_client(shared_zookeeper.hosts)
    b1, b2 = backend("b1", "tag"), backend("b2", "tag")
    k.create(f"{zk_path}/b1", curator("b1", "127.0.0.1", b1.port), makepath=True)
    k.create(f"{zk_path}/b2", curator("b2", "new.zklb.test", b2.port))
    lb = discovering_lb(zklb, dns, shared_zookeeper, zk_path)
    addr = lb.listen(SVC)
    wait_until(lambda: lookups(lb, "failed") >= 2, 5, what="a lookup and a retry failed")
    assert states(lb) == {"b1": "healthy", "b2": "resolving"}
    assert tags(addr, 10) == Counter({"b1": 10})
    assert lb.metrics().value("zklb_resolver_pending") == 1
    # Logged once, not once per retry.
    assert len(re.findall(r"be=new\.zklb\.test:\d+ not routable", lb.log())) == 1

    dns.add("new.zklb.test", "127.0.0.1")
    wait_until(lambda: states(lb)["b2"] == "healthy", 6, what="b2 resolved on a retry")
    assert set(tags(addr, 30)) == {"b1", "b2"}
    assert lb.metrics().value("zklb_resolver_pending") == 0


def test_removed_while_resolving(backend, dns, shared_zookeeper, kazoo_client, zk_path, zklb):
    """An instance removed while its name is being looked up is forgotten: the
    late answer changes nothing and nothing is left pending."""
    k = kazoo_client(shared_zookeeper.hosts)
    b1, b2 = backend("b1", "tag"), backend("b2", "tag")
    dns.add("gone.zklb.test", "127.0.0.1", delay=1.0)
    k.create(f"{zk_path}/b1", curator("b1", "127.0.0.1", b1.port), makepath=True)
    k.create(f"{zk_path}/b2", curator("b2", "gone.zklb.test", b2.port))
    lb = discovering_lb(zklb, dns, shared_zookeeper, zk_path)
    wait_until(lambda: states(lb).get("b2") == "resolving", 2, what="b2 resolving")
    k.delete(f"{zk_path}/b2")
    wait_until(lambda: "b2" not in states(lb), 2, what="b2 removed")
    wait_until(lambda: lb.metrics().value("zklb_resolver_pending") == 0, 3,
               what="the lookup finished and was dropped")
    assert lookups(lb, "ok") == 0
    assert tags(lb.listen(SVC), 10) == Counter({"b1": 10})
    assert b2.accepts == 0


def test_reload_never_waits_for_dns(backend, dns, zklb):
    """Names added by a reload are looked up off the control thread, several at a
    time: with the first new name taking 3 s, the admin API answers at once and
    the second new name is routed without waiting behind it."""
    b = {n: backend(n, "tag") for n in ("lit", "slow", "fast")}
    dns.add("slow.zklb.test", "127.0.0.1", delay=3.0)
    dns.add("fast.zklb.test", "127.0.0.1")
    svc = static_service([b["lit"]], balance="round_robin")
    lb = zklb(services={SVC: svc}, resolv_conf=dns.resolv_conf)
    addr = lb.listen(SVC)
    assert tags(addr, 4) == Counter({"lit": 4})

    svc = dict(svc, discovery={"type": "static", "backends": [
        b["lit"].address, f"slow.zklb.test:{b['slow'].port}", f"fast.zklb.test:{b['fast'].port}"]})
    t0 = time.monotonic()
    lb.reload(dict(lb.config, services={SVC: svc}))
    lb.wait_for_log(r"reload done")
    t1 = time.monotonic()
    lb.metrics()
    admin_s = time.monotonic() - t1
    wait_until(lambda: states(lb).get(f"fast.zklb.test:{b['fast'].port}") == "healthy", 1.5,
               what="fast routed while slow is still being looked up")
    assert states(lb)[f"slow.zklb.test:{b['slow'].port}"] == "resolving"
    assert set(tags(addr, 20)) == {"lit", "fast"}
    assert time.monotonic() - t0 < 3.0, "the checks above outlasted the DNS delay"
    print(f"\nreload + admin during a 3 s lookup: reload done, admin in {admin_s * 1000:.1f} ms")
    wait_until(lambda: states(lb)[f"slow.zklb.test:{b['slow'].port}"] == "healthy", 5,
               what="slow resolved")
    assert set(tags(addr, 30)) == {"lit", "fast", "slow"}


def test_never_answering_names_do_not_starve_other_services(backend, dns, shared_zookeeper,
                                                            kazoo_client, zk_path, zklb):
    """Service `bad` has 40 instances whose names DNS never answers. With the old
    shared queue of four threads, `good`'s one name waited behind all of them
    (5 s each, ten at a time: tens of seconds). Now bad holds at most
    max_lookups threads, gives each lookup up at lookup_timeout (counted,
    retried later), and good's name resolves at once."""
    k = kazoo_client(shared_zookeeper.hosts)
    g = backend("g", "tag")
    bad_path, good_path = f"{zk_path}/bad", f"{zk_path}/good"
    k.create(bad_path, b"", makepath=True)
    for i in range(40):
        name = f"never{i}.zklb.test"
        dns.add(name, "127.0.0.1", delay=3600.0)            # never answers
        k.create(f"{bad_path}/n{i}", curator(f"n{i}", name, 9))
    dns.add("good.zklb.test", "127.0.0.1")
    lb = zklb(services={
        "bad": {"listen": free_addr(), "discovery": {"type": "curator", "path": bad_path,
                                                     "allow_hostnames": True, "max_lookups": 3,
                                                     "lookup_timeout": "1s"}},
        SVC: {"listen": free_addr(), "discovery": {"type": "curator", "path": good_path,
                                                   "allow_hostnames": True}}},
        zookeeper={"hosts": shared_zookeeper.hosts, "session_timeout": "4s"},
        resolv_conf=dns.resolv_conf)
    wait_until(lambda: lb.metrics().value("zklb_resolver_threads") == 3, 5,
               what="bad's three lookups in flight")
    t0 = time.monotonic()
    k.create(f"{good_path}/g", curator("g", "good.zklb.test", g.port), makepath=True)
    wait_until(lambda: states(lb).get("g") == "healthy", 5, what="good's name resolved")
    took = time.monotonic() - t0
    print(f"\ngood's name routable {took * 1000:.0f} ms after it appeared, "
          f"with 40 never-answering names in another service")
    assert ask_tag(lb.listen(SVC), timeout=3) == "g"
    # bad never had more than its cap in flight, and its lookups were given up in time
    wait_until(lambda: lookups(lb, "timed_out") >= 3, 5, what="deadlines passed")
    m = lb.metrics()
    assert m.value("zklb_resolver_threads") <= 3 + 1
    assert lookups(lb, "ok") == 1
    asked = sum(1 for i in range(40) if dns.queries[f"never{i}.zklb.test"])
    assert asked <= 3 + lookups(lb, "timed_out"), "more lookups started than the cap allows"
    lb.wait_for_log(r"svc=bad be=never\d+\.zklb\.test:9 not routable: no answer within 1000ms")


def test_hostnames_refused(backend, dns, shared_zookeeper, kazoo_client, zk_path, zklb):
    """allow_hostnames false — the default for Curator — refuses a name: listed with
    the reason, counted, logged once, never asked of DNS; IP instances serve."""
    k = kazoo_client(shared_zookeeper.hosts)
    b1, b2 = backend("b1", "tag"), backend("b2", "tag")
    dns.add("named.zklb.test", "127.0.0.1")
    k.create(f"{zk_path}/b1", curator("b1", "127.0.0.1", b1.port), makepath=True)
    k.create(f"{zk_path}/b2", curator("b2", "named.zklb.test", b2.port))
    lb = zklb(services={SVC: {"listen": free_addr(),
                              "discovery": {"type": "curator", "path": zk_path}}},
              zookeeper={"hosts": shared_zookeeper.hosts, "session_timeout": "4s"},
              resolv_conf=dns.resolv_conf)
    wait_until(lambda: states(lb) == {"b1": "healthy", "b2": "refused"}, 5,
               what="b2 refused")
    assert {i["id"]: i.get("refused") for i in instances_of(lb.services()[SVC])}["b2"] == \
        "hostname_not_allowed"
    assert tags(lb.listen(SVC), 10) == Counter({"b1": 10})
    assert lookups(lb, "refused") == 1
    assert lb.metrics().value("zklb_resolver_pending") == 0
    assert dns.queries["named.zklb.test"] == 0
    assert len(re.findall(r"be=named\.zklb\.test:\d+ refused: 'named\.zklb\.test' is a host "
                          r"name and discovery\.allow_hostnames is false", lb.log())) == 1
    # the operator allows names: a reload lifts the refusal
    cfg = dict(lb.config)
    cfg["services"] = {SVC: dict(cfg["services"][SVC],
                                 discovery={"type": "curator", "path": zk_path,
                                            "allow_hostnames": True})}
    lb.reload(cfg)
    wait_until(lambda: states(lb).get("b2") == "healthy", 5, what="b2 resolved after the reload")
    assert dns.queries["named.zklb.test"] >= 1
