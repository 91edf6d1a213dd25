"""The runtime API: state-changing POSTs on the unix admin socket only —
drain / undrain an instance (open connections kept, no new ones routed),
set its weight, re-read a service from ZooKeeper — each logged with who
(SO_PEERCRED) and shown on the status page; GET /config with secrets
masked; a TCP admin refusing every POST.
"""

import json
import re
import time
from collections import Counter

import pytest

from harness import (ask_tag, close_all, hold, static_service, tags, tags_until, wait_until)

SVC = "web"


def unix_lb(zklb, workdir, backends, **svc):
    return zklb(services={SVC: static_service(backends, **svc)},
                admin=f"unix:{workdir / 'admin.sock'}")


def post(lb, path):
    status, _, body = lb.admin_request("POST", path)
    return status, json.loads(body) if body else None


def instance(lb, backend):
    return lb.instances(SVC)[backend.address]


def test_drain_keeps_open_connections_and_routes_none_new(backend, zklb, workdir):
    b1, b2 = backend("b1", "tag"), backend("b2", "tag")
    lb = unix_lb(zklb, workdir, [b1, b2])
    addr = lb.listen(SVC)
    held = hold(addr, 6)
    on_b1 = [s for tag, s in held if tag == "b1"]
    assert on_b1, f"no connection reached b1: {[t for t, _ in held]}"

    status, doc = post(lb, f"/services/{SVC}/instances/{b1.address}/drain")
    assert status == 200, doc
    assert doc["drain"] is True and doc["change"].startswith("drained by uid=")
    assert re.search(rf"admin: drain svc={SVC} be={b1.address} id={b1.address} by uid=\d+ pid=\d+",
                     lb.log())

    # No new connection goes to b1...
    assert tags(addr, 20) == Counter({"b2": 20})
    # ...the open ones are untouched: they still talk to b1, and b1 still has them.
    for s in on_b1:
        s.sendall(b"still\n")
        assert s.recv(64) == b"still\n"
    inst = instance(lb, b1)
    assert inst["admin_drain"] is True and inst["state"] == "drain"
    assert inst["active"] == len(on_b1)
    assert b1.active == len(on_b1)
    # The status page says who.
    page = lb.admin_json("/status")
    assert re.search(r"drained by uid=\d+ pid=\d+", json.dumps(page)), page

    status, doc = post(lb, f"/services/{SVC}/instances/{b1.address}/undrain")
    assert status == 200 and doc["drain"] is False
    assert instance(lb, b1)["state"] == "healthy"
    tags_until(addr, {"b1", "b2"})
    close_all(held)


def test_drained_instance_is_not_used_even_in_panic(backend, zklb, workdir):
    """Drain is administrative, apart from health: with the only other
    instance down (connects refused), the drained one still gets nothing."""
    b1 = backend("b1", "tag")
    b2 = backend("b2", "tag")
    lb = unix_lb(zklb, workdir, [b1, b2], retries=1)
    addr = lb.listen(SVC)
    assert post(lb, f"/services/{SVC}/instances/{b1.address}/drain")[0] == 200
    b2.stop()
    for _ in range(5):
        try:
            tag = ask_tag(addr, timeout=2)
        except (OSError, ValueError):
            continue
        assert tag != "b1", "a drained instance got a connection"
    assert instance(lb, b1)["total"] == 0


def test_weight(backend, zklb, workdir):
    b1, b2 = backend("b1", "tag"), backend("b2", "tag")
    lb = unix_lb(zklb, workdir, [b1, b2], balance="round_robin")
    addr = lb.listen(SVC)
    status, doc = post(lb, f"/services/{SVC}/instances/{b1.address}/weight?value=3")
    assert status == 200 and doc["weight"] == 3, doc
    inst = instance(lb, b1)
    assert inst["weight"] == 3 and inst["discovered_weight"] == 1
    seen = tags(addr, 40)
    assert seen["b1"] == 30 and seen["b2"] == 10, seen
    assert re.search(r"weight 3 by uid=\d+", json.dumps(lb.admin_json("/status")))

    for bad in ("value=257", "value=-1", "value=x", "value=", "other=1", ""):
        status, doc = post(lb, f"/services/{SVC}/instances/{b1.address}/weight?{bad}")
        assert status == 400, (bad, doc)
    assert instance(lb, b1)["weight"] == 3

    status, doc = post(lb, f"/services/{SVC}/instances/{b1.address}/weight?value=0")
    assert status == 200 and doc["weight"] == 1
    assert "discovered_weight" not in instance(lb, b1)


def test_unknown_targets_and_bad_paths(backend, zklb, workdir):
    b1 = backend("b1", "tag")
    lb = unix_lb(zklb, workdir, [b1])
    for path, want in [(f"/services/nope/instances/{b1.address}/drain", 404),
                       (f"/services/{SVC}/instances/10.9.9.9:1/drain", 404),
                       (f"/services/{SVC}/instances/{b1.address}/explode", 404),
                       (f"/services/{SVC}/reread", 409),	# static: nothing to re-read
                       ("/services//instances", 400),
                       ("/services/%00/reread", 400),
                       ("/a/b/c/d/e/f/g/h", 400),
                       ("/", 405)]:	# the status page: a GET endpoint
        status, doc = post(lb, path)
        assert status == want, (path, status, doc)
    # GET endpoints take no POST; POST endpoints no GET.
    assert lb.admin_request("POST", "/services")[0] == 405
    assert lb.admin_request("GET", f"/services/{SVC}/instances/{b1.address}/drain")[0] == 404
    assert ask_tag(lb.listen(SVC)) == "b1"


def test_tcp_admin_refuses_every_post(backend, zklb):
    b1 = backend("b1", "tag")
    lb = zklb(services={SVC: static_service([b1])})
    status, _, body = lb.admin_request("POST", f"/services/{SVC}/instances/{b1.address}/drain")
    assert status == 403, body
    assert b"unix admin socket" in body
    assert instance(lb, b1)["admin_drain"] is False
    assert tags(lb.listen(SVC), 3) == Counter({"b1": 3})
    assert re.search(rf"admin: refused /services/{SVC}/instances/\S+/drain from 127\.0\.0\.1:\d+",
                     lb.log())


def test_config_shows_effective_values_and_masks_secrets(backend, zklb, closed_port, workdir):
    b1 = backend("b1", "tag")
    zk = closed_port()	# a ZooKeeper that never answers: zklb serves its static service anyway
    lb = zklb(services={SVC: static_service([(b1, 7)], retries=1)},
              zookeeper={"hosts": zk.address, "auth": "digest:ops:s3cret-pw"},
              admin=f"unix:{workdir / 'admin.sock'}")
    status, headers, body = lb.admin_get("/config")
    assert status == 200 and headers["content-type"] == "application/json"
    assert b"s3cret" not in body
    cfg = json.loads(body)
    assert cfg["zookeeper"]["auth"] == "***"
    assert cfg["zookeeper"]["hosts"] == zk.address
    web = cfg["services"][SVC]
    assert web["retries"] == 1
    assert web["balance"] == "least_conn"		# a default
    assert web["idle_timeout"] == "5m"
    assert web["listen"] == lb.config["services"][SVC]["listen"]
    assert web["discovery"]["backends"] == [f"{b1.address} weight=7"]
    assert cfg["log"]["access"] is None
    assert cfg["drain_timeout"] == "5s"


@pytest.mark.zookeeper
def test_reread_from_zookeeper(backend, zklb, zookeeper, zk_client, workdir):
    b1, b2 = backend("b1", "tag"), backend("b2", "tag")
    path = "/services/web"
    for b in (b1, b2):
        doc = {"name": SVC, "id": b.name, "address": "127.0.0.1", "port": b.port,
               "sslPort": None, "payload": None, "registrationTimeUTC": 0,
               "serviceType": "DYNAMIC", "uriSpec": None}
        zk_client.create(f"{path}/{b.name}", json.dumps(doc).encode(), makepath=True,
                         ephemeral=True)
    lb = zklb(services={SVC: {"listen": f"127.0.0.1:{__import__('harness').free_port()}",
                              "discovery": {"type": "curator", "path": path}}},
              zookeeper={"hosts": zookeeper.hosts, "session_timeout": "2s"},
              admin=f"unix:{workdir / 'admin.sock'}")
    wait_until(lambda: {i["id"] for i in lb.services()[SVC]["instances"]} == {"b1", "b2"}, 10,
               what="both instances discovered")
    addr = lb.listen(SVC)
    mark = lb.log_mark()
    status, doc = post(lb, f"/services/{SVC}/reread")
    assert status == 200, doc
    lb.wait_for_log(rf"admin: re-read svc={SVC} from ZooKeeper by uid=\d+ pid=\d+", since=mark)
    # Drain by id survives the re-read (the instances stay the same objects).
    assert post(lb, f"/services/{SVC}/instances/b1/drain")[0] == 200
    assert post(lb, f"/services/{SVC}/reread")[0] == 200
    time.sleep(0.3)
    assert {i["id"] for i in lb.services()[SVC]["instances"]} == {"b1", "b2"}
    assert tags(addr, 10) == Counter({"b2": 10})
