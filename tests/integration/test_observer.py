"""zklb against a ZooKeeper ensemble with an observer, connected to the observer only.

A fleet of thousands of hosts should not hold its sessions on the voting members:
observers (peerType=observer) serve reads and watches themselves, forward writes
to the leader, and add no voting cost. This checks that everything zklb does with
ZooKeeper works through an observer alone: discovery (reads, watches), announce
(ephemeral creates and deletes, forwarded), sync and the configuration overlay.
Changes are made with kazoo on the voters; zklb's connect string lists only the
observer. Loopback only, every wait bounded.
"""

import json
import time

import pytest

import harness
from harness import ask_tag, instances_of

pytestmark = [pytest.mark.zookeeper, pytest.mark.slow]


def curator(id_, port):
    return json.dumps({"name": "web", "id": id_, "address": "127.0.0.1", "port": port,
                       "sslPort": None, "payload": None,
                       "registrationTimeUTC": int(time.time() * 1000),
                       "serviceType": "DYNAMIC", "uriSpec": None}).encode()


def test_everything_through_an_observer(observed_ensemble, kazoo_client, backend, zklb, tmp_path):
    observed = observed_ensemble
    assert [n.mode() for n in observed.observers] == ["observer"]
    k = kazoo_client(observed.hosts)                 # the voters
    b1, b2, local = backend("b1", "tag"), backend("b2", "tag"), backend("local", "echo")
    k.create("/services/web/b1", curator("b1", b1.port), makepath=True)

    out = tmp_path / "app.conf"
    k.create("/config/app.conf", b"v=1\n", makepath=True)
    svc = {"listen": harness.free_addr(),
           "discovery": {"type": "curator", "path": "/services/web"}}
    lb = zklb(services={"web": svc},
              zookeeper={"hosts": observed.observer_hosts, "session_timeout": "4s",
                         "config_path": "/zklb/config"},
              announce=[{"service": "local", "base_path": "/services", "address": "127.0.0.1",
                         "port": local.port,
                         "check": {"type": "tcp", "interval": "100ms", "timeout": "200ms",
                                   "rise": 1, "fall": 2}}],
              sync=[{"path": "/config/app.conf", "file": str(out)}],
              # the overlay below replaces the file's service with a loopback backend
              overlay={"replace_file_services": True, "denied_networks": ["reserved"]})
    addr = lb.listen("web")

    # Its session is on the observer, not on a voter.
    def on_observer():
        return any("/127.0.0.1:" in line for line in
                   harness.four_letter(observed.observers[0].hosts, "cons").splitlines()
                   if "sid=" in line and "queued" in line)
    harness.wait_until(on_observer, 10, what="zklb's session on the observer")

    # Discovery: reads and watches served by the observer.
    harness.wait_until(lambda: ask_tag(addr) == "b1", 15, what="b1 routed")
    k.create("/services/web/b2", curator("b2", b2.port))
    harness.wait_until(lambda: sorted(i["id"] for i in instances_of(lb.services()["web"]))
                       == ["b1", "b2"], 10, what="b2 discovered through the observer")
    k.delete("/services/web/b1")
    harness.wait_until(lambda: [i["id"] for i in instances_of(lb.services()["web"])
                                if i["state"] != "draining"] == ["b2"], 10,
                       what="b1 removed through the observer")
    assert ask_tag(addr) == "b2"

    # Announce: the create is forwarded to the leader; the voters see it.
    harness.wait_until(lambda: k.exists("/services/local") and
                       len(k.get_children("/services/local")) == 1, 15,
                       what="announced node visible on the voters")
    (child,) = k.get_children("/services/local")
    data, stat = k.get(f"/services/local/{child}")
    assert json.loads(data)["port"] == local.port and stat.ephemeralOwner != 0

    # Sync: the file follows the node.
    harness.wait_until(lambda: out.exists() and out.read_bytes() == b"v=1\n", 10,
                       what="synced file")
    k.set("/config/app.conf", b"v=2\n")
    harness.wait_until(lambda: out.read_bytes() == b"v=2\n", 10, what="synced change")

    # Overlay: a document on the voters reshapes the service through the observer.
    overlay = {"web": {"listen": svc["listen"],
                       "discovery": {"type": "static", "backends": [b1.address]}}}
    mark = lb.log_mark()
    k.create("/zklb/config", json.dumps(overlay).encode(), makepath=True)
    lb.wait_for_log(r"config overlay zookeeper:/zklb/config applied", since=mark, timeout=10)
    harness.wait_until(lambda: ask_tag(addr) == "b1", 10, what="overlay applied")

    # Stopping withdraws the announced node (a delete, forwarded).
    lb.stop()
    harness.wait_until(lambda: k.get_children("/services/local") == [], 10,
                       what="announced node withdrawn")
