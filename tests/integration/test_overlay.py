"""zookeeper.config_path: a JSON document in ZooKeeper laid over the file's
services. It changes a running service without a restart or a dropped
connection, is rejected whole when invalid (the log names the JSON path),
survives SIGHUP, applies at start, and is cached in cache_dir for a start while
ZooKeeper is down (a cached document that no longer fits is dropped).
"""

import json
import re
import socket

import pytest

import harness
from harness import ask_tag, free_addr, static_service, tags, zk_section

pytestmark = pytest.mark.zookeeper

# The tests below replace the file's "web" and route to backends on loopback,
# which the default overlay policy refuses (see the policy tests at the end).
TRUSTING = {"replace_file_services": True, "denied_networks": ["reserved"]}


def test_config_overlay_changes_a_running_service(shared_zookeeper, zk_path, kazoo_client,
                                                  backend, zklb):
    k = kazoo_client(shared_zookeeper.hosts)
    cfg_node = zk_path + "/zklb/config"
    b1 = backend("b1", mode="tag")
    b2 = backend("b2", mode="tag")
    svc = static_service([b1, b2], balance="round_robin")
    z = zklb(services={"web": svc}, zookeeper=zk_section(shared_zookeeper, config_path=cfg_node),
             overlay=TRUSTING)
    addr = z.listen("web")
    assert set(tags(addr, 10)) == {"b1", "b2"}
    assert z.services()["web"]["origin"] == "file"

    # a connection open across every change below keeps working
    tag0, open_conn = ask_tag(addr, keep=True)
    try:
        # the overlay retunes web: only b2, with weights (whole service replaced)
        overlay = {"web": {"listen": svc["listen"], "balance": "least_conn",
                           "discovery": {"type": "static",
                                         "backends": [f"{b2.address} weight=3"]}}}
        mark = z.log_mark()
        k.create(cfg_node, json.dumps(overlay).encode(), makepath=True)
        z.wait_for_log(r"config overlay zookeeper:%s applied" % re.escape(cfg_node), since=mark)
        assert tags(addr, 10) == {"b2": 10}
        assert z.services()["web"]["origin"] == f"zookeeper:{cfg_node}"

        # invalid JSON: rejected as a whole, b2-only stays
        mark = z.log_mark()
        k.set(cfg_node, b'{"web": {"listen": ')
        z.wait_for_log(r"zookeeper:%s: invalid JSON" % re.escape(cfg_node), since=mark)
        z.wait_for_log(r"config overlay .* rejected: the running configuration stays", since=mark)
        assert tags(addr, 6) == {"b2": 6}

        # valid JSON, invalid setting: the error names the JSON path
        bad = json.loads(json.dumps(overlay))
        bad["web"]["balance"] = "fastest"
        mark = z.log_mark()
        k.set(cfg_node, json.dumps(bad).encode())
        z.wait_for_log(r"zookeeper:%s: services\.web\.balance" % re.escape(cfg_node), since=mark)
        assert tags(addr, 6) == {"b2": 6}

        # SIGHUP re-reads the file and lays the overlay in force over it again
        mark = z.log_mark()
        z.reload()
        z.wait_for_log(r"reload done", since=mark)
        assert tags(addr, 6) == {"b2": 6}
        assert z.services()["web"]["origin"] == f"zookeeper:{cfg_node}"

        # a new valid overlay adds a service and rebalances web over both
        extra_listen = free_addr()
        overlay2 = {"web": {"listen": svc["listen"], "balance": "round_robin",
                            "discovery": {"type": "static",
                                          "backends": [b1.address, b2.address]}},
                    "web2": {"listen": extra_listen,
                             "discovery": {"type": "static", "backends": [b1.address]}}}
        mark = z.log_mark()
        k.set(cfg_node, json.dumps(overlay2).encode())
        z.wait_for_log(r"config overlay .* applied: 2 services", since=mark)
        assert set(tags(addr, 10)) == {"b1", "b2"}
        assert ask_tag(harness.split_addr(extra_listen)) == "b1"

        # the node deleted: back to the file's services (web2 goes away)
        mark = z.log_mark()
        k.delete(cfg_node)
        z.wait_for_log(r"config overlay .* applied: 1 services", since=mark)
        assert z.services()["web"]["origin"] == "file"
        assert "web2" not in z.services()

        open_conn.sendall(b"still here")
        assert open_conn.recv(100) == b"still here"
    finally:
        open_conn.close()


def test_config_overlay_present_at_start(shared_zookeeper, zk_path, kazoo_client, backend,
                                         zklb):
    k = kazoo_client(shared_zookeeper.hosts)
    cfg_node = zk_path + "/zklb/config"
    b1 = backend("b1", mode="tag")
    b2 = backend("b2", mode="tag")
    svc = static_service([b1])
    # the wrapped form {"services": {...}} is accepted too
    overlay = {"services": {"web": {"listen": svc["listen"],
                                    "discovery": {"type": "static", "backends": [b2.address]}}}}
    k.create(cfg_node, json.dumps(overlay).encode(), makepath=True)
    z = zklb(services={"web": svc}, zookeeper=zk_section(shared_zookeeper, config_path=cfg_node),
             overlay=TRUSTING)
    z.wait_for_log(r"config overlay zookeeper:%s applied" % re.escape(cfg_node))
    assert tags(z.listen("web"), 6) == {"b2": 6}
    assert z.services()["web"]["origin"] == f"zookeeper:{cfg_node}"


def test_config_overlay_cached_for_a_start_without_zookeeper(zookeeper, kazoo_client, backend,
                                                             zklb, tmp_path):
    """The overlay in force is kept in cache_dir: a restart while ZooKeeper is down
    applies it (not the file's services alone) until ZooKeeper answers; a deleted
    node removes it; a cached document that no longer fits the file is dropped
    with a warning instead of failing the start."""
    k = kazoo_client(zookeeper.hosts)
    cfg_node = "/zklb/config"
    cache = tmp_path / "cache" / ".overlay.json"
    b1, b2 = backend("b1", mode="tag"), backend("b2", mode="tag")
    svc = static_service([b1])
    extra_listen = free_addr()
    overlay = {"web": {"listen": svc["listen"],
                       "discovery": {"type": "static", "backends": [b2.address]}},
               "web2": {"listen": extra_listen,
                        "discovery": {"type": "static", "backends": [b2.address]}}}
    k.create(cfg_node, json.dumps(overlay).encode(), makepath=True)
    z = zklb(services={"web": svc}, zookeeper=zk_section(zookeeper, config_path=cfg_node),
             overlay=TRUSTING)
    z.wait_for_log(r"config overlay .* applied: 2 services")
    wait = harness.wait_until
    wait(lambda: cache.exists(), 3, what="the overlay cache file")
    assert oct(cache.stat().st_mode & 0o777) == "0o600"
    assert json.loads(json.loads(cache.read_text())["document"]) == overlay

    # Restart while ZooKeeper is down: the cached overlay is in force at once.
    assert z.stop() == 0
    zookeeper.kill()
    z2 = zklb(z.config, name="zklb2")
    z2.wait_for_log(r"config overlay zookeeper:/zklb/config: \d+ bytes from .*\.overlay\.json")
    assert tags(z2.listen("web"), 6) == {"b2": 6}
    assert ask_tag(harness.split_addr(extra_listen)) == "b2"
    assert z2.services()["web"]["origin"] == f"zookeeper:{cfg_node}"
    assert z2.metrics().value("zklb_config_overlay_cached") == 1

    # ZooKeeper back, the node deleted meanwhile: back to the file; cache removed.
    zookeeper.start()
    wait(lambda: k.connected, 20, what="kazoo reconnected")
    k.delete(cfg_node)
    z2.wait_for_log(r"config overlay .* applied: 1 services", timeout=20)
    assert tags(z2.listen("web"), 6) == {"b1": 6}
    assert z2.metrics().value("zklb_config_overlay_cached") == 0
    assert not cache.exists()
    assert z2.stop() == 0

    # A cached document that does not fit the file (here: web2's listen address
    # is taken by the file's own service) is dropped; the file runs alone.
    cache.write_text(json.dumps({"format": "zklb-overlay/1", "path": cfg_node,
                                 "written_at_ms": 1, "document": json.dumps(overlay)}))
    clash = dict(z.config, services={"web": svc, "other": static_service([b1],
                                                                      listen=extra_listen)})
    zookeeper.kill()
    z3 = zklb(clash, name="zklb3")
    z3.wait_for_log(r"the cached document does not fit")
    assert tags(z3.listen("web"), 6) == {"b1": 6}
    assert z3.metrics().value("zklb_config_overlay_cached") == 0

    # One that validates but cannot apply (web2's listen address is taken by
    # another process) is dropped too: a stale cache never keeps zklb down.
    assert z3.stop() == 0
    taken = socket.socket()
    try:
        taken.bind(harness.split_addr(extra_listen))
        taken.listen(1)
        z4 = zklb(z.config, name="zklb4")
        z4.wait_for_log(r"svc=web2 cannot listen")
        z4.wait_for_log(r"the cached document does not fit")
        assert tags(z4.listen("web"), 6) == {"b1": 6}
    finally:
        taken.close()


# ---- the file's overlay policy (issue 12) -------------------------------------------


def test_overlay_policy_refuses_whole_and_switches_allow(shared_zookeeper, zk_path, kazoo_client,
                                                         backend, zklb):
    """An overlay is less trusted than the file: by default it cannot listen on
    0.0.0.0, replace a service the file defines, send check payloads or exceed
    the bounds; a refused document is rejected whole (nothing of it applies)
    with the JSON path of the reason. The file's switches allow each."""
    k = kazoo_client(shared_zookeeper.hosts)
    cfg_node = zk_path + "/zklb/config"
    b1, b2 = backend("b1", mode="tag"), backend("b2", mode="tag")
    svc = static_service([b1])
    api_listen = free_addr()
    api = {"listen": api_listen, "discovery": {"type": "curator", "path": zk_path + "/s/api"}}
    k.create(cfg_node, b"{}", makepath=True)
    z = zklb(services={"web": svc}, zookeeper=zk_section(shared_zookeeper, config_path=cfg_node))
    z.wait_for_log(r"config overlay zookeeper:%s applied" % re.escape(cfg_node))
    origin = re.escape(f"zookeeper:{cfg_node}")

    def refused(doc, reason):
        before = z.metrics().value("zklb_config_overlay_rejected_total")
        mark = z.log_mark()
        k.set(cfg_node, json.dumps(doc).encode())
        z.wait_for_log(origin + ": " + reason, since=mark)
        z.wait_for_log(r"config overlay .* rejected: the running configuration stays", since=mark)
        assert z.metrics().value("zklb_config_overlay_rejected_total") == before + 1
        assert set(z.services()) == {"web"}                 # nothing of it applied
        assert tags(z.listen("web"), 4) == {"b1": 4}

    # 0.0.0.0 refused whole: the valid api next to it does not apply either
    wild = "0.0.0.0:" + api_listen.rsplit(":", 1)[1]
    refused({"api": api, "pub": {"listen": wild,
                                 "discovery": {"type": "curator", "path": zk_path + "/s/x"}}},
            r"services\.pub\.listen: '0\.0\.0\.0:\d+' is outside overlay\.listen_networks")
    assert harness.connect_refused(api_listen)
    # a static backend at the metadata address, in another spelling
    refused({"api": dict(api, discovery={"type": "static",
                                         "backends": ["[::ffff:169.254.169.254]:80"]})},
            r"services\.api\.discovery\.backends\[0\]: '\[::ffff:169\.254\.169\.254\]:80' is "
            r"refused for an overlay: inside overlay\.denied_networks 169\.254\.0\.0/16")
    # loopback (the host's admin port, say) is refused too by default
    refused({"api": dict(api, discovery={"type": "static", "backends": [b2.address]})},
            r"services\.api\.discovery\.backends\[0\]: '127\.0\.0\.1:\d+' is refused")
    # replacing the file's web
    refused({"web": {"listen": svc["listen"], "discovery": {"type": "static",
                                                           "backends": ["10.9.9.9:80"]}}},
            r"services\.web: the file defines this service; an overlay may replace it only "
            r"with overlay\.replace_file_services: true")
    # check payloads and bounds
    refused({"api": dict(api, health={"check": {"type": "send_expect", "send": "PING\r\n",
                                                "expect": "+PONG"}})},
            r"services\.api\.health\.check\.send: check payloads \(send/expect\) from an overlay "
            r"need overlay\.check_payloads: true")
    refused({"api": dict(api, health={"check": {"type": "tcp", "interval": "50ms"}})},
            r"services\.api\.health\.check\.interval: 50ms is below overlay\.min_check_interval")
    refused({"api": dict(api, pool={"prewarm": 50, "max_idle": 50})},
            r"services\.api\.pool\.prewarm: 50 is over overlay\.max_prewarm \(4\)")
    refused({"api": dict(api, max_buffer="16m")},
            r"services\.api\.max_buffer: 16777216 bytes is over overlay\.max_buffer")

    # a plain new service on loopback is fine
    mark = z.log_mark()
    k.set(cfg_node, json.dumps({"api": api}).encode())
    z.wait_for_log(r"config overlay .* applied: 2 services", since=mark)
    assert set(z.services()) == {"web", "api"}

    # the file's switches: replacing web (to b2 on loopback) and payloads become legal
    cfg = dict(z.config, overlay={"replace_file_services": True, "check_payloads": True,
                                  "denied_networks": ["reserved"]})
    mark = z.log_mark()
    z.reload(cfg)
    z.wait_for_log(r"reload done", since=mark)
    mark = z.log_mark()
    k.set(cfg_node, json.dumps({"web": {"listen": svc["listen"],
                                        "discovery": {"type": "static",
                                                      "backends": [b2.address]},
                                        "health": {"check": {"type": "send_expect",
                                                             "send": "x", "expect": "b2"}}}}
                               ).encode())
    z.wait_for_log(r"config overlay .* applied: 1 services", since=mark)
    harness.wait_until(lambda: tags(z.listen("web"), 4) == {"b2": 4}, 5, what="web replaced")
    assert z.services()["web"]["origin"] == f"zookeeper:{cfg_node}"
