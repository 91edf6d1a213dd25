"""Destination policy (issue 12): allowed_networks / denied_networks and zklb's own
listeners, through the real binary with real ZooKeeper nodes written by kazoo as
Curator JSON.

  - the default `denied_networks: [reserved]` refuses the metadata address in
    every spelling that resolves to it (dotted, decimal, hex, IPv4-mapped IPv6),
    and 0.0.0.0; each refused instance is listed in /services as `refused` with
    its reason, counted, logged once; the healthy instance beside them serves
    every connection;
  - an instance pointing at the admin port or at a service's own listener is
    refused (a ZooKeeper writer must not route zklb into itself);
  - an allow-list refuses everything outside it;
  - a static backend in a denied network is refused the same way;
  - `zklb check` warns about a denied_networks without `reserved`;
  - a reload that narrows the lists refuses an admitted instance (its open
    connection finishes), and widening them admits it again.

    tests/run tests/integration/test_netpolicy.py
"""

import json
import re
import time

import pytest

import harness
from harness import free_addr, split_addr, tags, wait_until, zk_section

pytestmark = pytest.mark.zookeeper

SVC = "web"
METADATA = "169.254.169.254"


def curator(id_, host, port):
    return json.dumps({"name": SVC, "id": id_, "address": host, "port": port,
                       "sslPort": None, "payload": None,
                       "registrationTimeUTC": int(time.time() * 1000),
                       "serviceType": "DYNAMIC", "uriSpec": None}).encode()


def zk_service(path, **settings):
    svc = {"listen": free_addr(), "discovery": {"type": "curator", "path": path},
           "connect_timeout": "1s"}
    svc.update(settings)
    return svc


def instances(lb, name=SVC):
    return {i["id"]: i for i in harness.instances_of(lb.services()[name])}


def wait_states(lb, want, name=SVC, timeout=10.0):
    """Wait until every id in want has that state; → the instances."""
    def ok():
        have = instances(lb, name)
        return all(i in have and have[i]["state"] == s for i, s in want.items())
    wait_until(ok, timeout, what=f"states {want} (have "
               f"{ {k: v['state'] for k, v in instances(lb, name).items()} })")
    return instances(lb, name)


def test_reserved_refused_in_every_spelling(backend, zklb, shared_zookeeper, zk_path,
                                            kazoo_client):
    good = backend("good", mode="tag")
    k = kazoo_client(shared_zookeeper.hosts)
    path = f"{zk_path}/services/{SVC}"
    bad = {
        "dotted": METADATA,
        "decimal": "2852039166",          # 169.254.169.254 as one number
        "hex": "0xa9.0xfe.0xa9.0xfe",     # ...and in hex
        "mapped": "::ffff:169.254.169.254",
        "linklocal6": "fe80::1",
        "unspecified": "0.0.0.0",
    }
    k.create(f"{path}/good", curator("good", "127.0.0.1", good.port), makepath=True)
    for id_, host in bad.items():
        k.create(f"{path}/{id_}", curator(id_, host, 80), makepath=True)

    lb = zklb(services={SVC: zk_service(path)}, zookeeper=zk_section(shared_zookeeper))
    want = {"good": "healthy", **{i: "refused" for i in bad}}
    have = wait_states(lb, want)
    for id_ in ("dotted", "decimal", "hex", "mapped"):
        assert have[id_]["refused"] == "denied_network 169.254.0.0/16", have[id_]
    assert have["linklocal6"]["refused"] == "denied_network fe80::/10"
    assert have["unspecified"]["refused"] == "denied_network 0.0.0.0/8"
    assert "refused" not in have["good"]
    assert lb.services()[SVC]["refused_instances"] == len(bad)
    m = lb.metrics()
    assert m.value("zklb_service_refused_instances_total", service=SVC) == len(bad)

    # Every connection reaches the one admitted instance.
    assert tags(lb.config["services"][SVC]["listen"], 20) == {"good": 20}
    # Logged once per instance, with the reason.
    log = lb.log()
    for id_ in bad:
        lines = re.findall(rf"id={re.escape(id_)} refused: denied_network", log)
        assert len(lines) == 1, (id_, lines)


def test_own_listeners_refused(backend, zklb, shared_zookeeper, zk_path, kazoo_client):
    good = backend("good", mode="tag")
    k = kazoo_client(shared_zookeeper.hosts)
    path = f"{zk_path}/services/{SVC}"
    admin = free_addr()
    other = free_addr()
    svc = zk_service(path)
    own_port = split_addr(svc["listen"])[1]
    k.create(f"{path}/good", curator("good", "127.0.0.1", good.port), makepath=True)
    k.create(f"{path}/admin", curator("admin", "127.0.0.1", split_addr(admin)[1]), makepath=True)
    # The other service listens on 0.0.0.0: any local address on its port is zklb.
    wild_port = split_addr(other)[1]
    k.create(f"{path}/wild", curator("wild", "127.0.0.3", wild_port), makepath=True)
    k.create(f"{path}/loop", curator("loop", "127.0.0.1", own_port), makepath=True)

    services = {SVC: svc,
                "other": harness.static_service([good], listen=f"0.0.0.0:{wild_port}")}
    lb = zklb(harness.zklb_config(services, admin=admin, zookeeper=zk_section(shared_zookeeper)))
    have = wait_states(lb, {"good": "healthy", "admin": "refused", "wild": "refused",
                            "loop": "refused"})
    assert have["admin"]["refused"] == f"zklb_listener port {split_addr(admin)[1]}"
    assert have["wild"]["refused"] == f"zklb_listener port {wild_port}"
    assert have["loop"]["refused"] == f"zklb_listener port {own_port}"
    assert tags(svc["listen"], 10) == {"good": 10}


def test_allow_list(backend, zklb, shared_zookeeper, zk_path, kazoo_client):
    inside = backend("inside", mode="tag", host="127.0.0.2")
    outside = backend("outside", mode="tag")
    k = kazoo_client(shared_zookeeper.hosts)
    path = f"{zk_path}/services/{SVC}"
    k.create(f"{path}/inside", curator("inside", "127.0.0.2", inside.port), makepath=True)
    k.create(f"{path}/outside", curator("outside", "127.0.0.1", outside.port), makepath=True)
    lb = zklb(services={SVC: zk_service(path, allowed_networks=["127.0.0.2/32"])},
              zookeeper=zk_section(shared_zookeeper))
    have = wait_states(lb, {"inside": "healthy", "outside": "refused"})
    assert have["outside"]["refused"] == "not_allowed"
    assert tags(lb.config["services"][SVC]["listen"], 10) == {"inside": 10}
    # An instance added later meets the same policy.
    k.create(f"{path}/later", curator("later", "127.0.0.1", outside.port), makepath=True)
    wait_states(lb, {"later": "refused"})
    assert outside.active == 0


def test_static_backend_in_denied_network(backend, zklb):
    good = backend("good", mode="tag")
    svc = harness.static_service([good, f"{METADATA}:80"])
    lb = zklb(services={SVC: svc})
    have = lb.instances(SVC)
    assert have[f"{METADATA}:80"]["state"] == "refused"
    assert have[f"{METADATA}:80"]["refused"] == "denied_network 169.254.0.0/16"
    assert tags(svc["listen"], 10) == {"good": 10}


def test_check_warns_without_reserved(tmp_path, backend):
    good = backend("good")
    cfg = harness.zklb_config({SVC: harness.static_service([good], denied_networks=["10.0.0.0/8"])},
                              denied_networks=[])
    p = tmp_path / "z.yaml"
    p.write_text(harness.to_yaml(cfg))
    r = harness.run_zklb(["check", "-c", str(p)])
    assert r.returncode == 0, r.stderr
    assert f"{p}: warning: denied_networks does not include `reserved`" in r.stderr
    assert f"{p}: warning: services.{SVC}.denied_networks does not include `reserved`" in r.stderr
    # The default says nothing.
    cfg = harness.zklb_config({SVC: harness.static_service([good])})
    p.write_text(harness.to_yaml(cfg))
    r = harness.run_zklb(["check", "-c", str(p)])
    assert r.returncode == 0 and "warning" not in r.stderr, r.stderr
    # A malformed entry is an error with its position.
    cfg = harness.zklb_config({SVC: harness.static_service([good])},
                              allowed_networks=["10.0.0.1/8"])
    p.write_text(harness.to_yaml(cfg))
    r = harness.run_zklb(["check", "-c", str(p)])
    assert r.returncode == 1 and "allowed_networks[0]" in r.stderr and "host bits" in r.stderr, r.stderr


def test_reload_narrowing_refuses_admitted_instances(backend, zklb):
    """A reload that narrows the lists takes new connections away from instances
    they now refuse (their open connections finish); widening them again admits
    the instance anew."""
    b1 = backend("b1", mode="tag")
    b2 = backend("b2", mode="tag", host="127.0.0.2")
    svc = harness.static_service([b1, b2], balance="round_robin")
    lb = zklb(services={SVC: svc})
    addr = svc["listen"]
    assert tags(addr, 10) == {"b1": 5, "b2": 5}
    held = None
    while held is None:
        tag, s = harness.ask_tag(addr, keep=True)
        if tag == "b2":
            held = s
        else:
            s.close()

    cfg = dict(lb.config)
    cfg["services"] = {SVC: dict(svc, allowed_networks=["127.0.0.1/32"])}
    lb.reload(cfg)

    def states():
        return sorted((i["address"], i["state"], i.get("refused", ""))
                      for i in harness.instances_of(lb.services()[SVC]))
    wait_until(lambda: ("127.0.0.2", "refused", "not_allowed") in states(), 10,
               what=f"b2 refused after the reload (have {states()})")
    assert tags(addr, 10) == {"b1": 10}
    # The connection b2 had stays up, bytes both ways.
    held.sendall(b"still there")
    assert held.recv(64) == b"still there"
    held.close()

    lb.reload(cfg | {"services": {SVC: svc}})
    wait_until(lambda: ("127.0.0.2", "healthy", "") in states(), 10,
               what=f"b2 admitted again (have {states()})")
    assert tags(addr, 10) == {"b1": 5, "b2": 5}
