"""ZooKeeper discovery, black-box through the real zklb binary.

A service with `discovery: {type: curator, path: ...}` and a `zookeeper:`
section; instances are registered with kazoo (the independent client) as
Curator JSON; traffic goes through zklb to tag backends, so every connection
says which instance served it. Covered (docs/design.md §5):

  - adds and removes reach the data plane; a removed instance keeps its open
    connections (bytes both ways) but gets no new one;
  - update latency, create()/delete() → first/last connection (printed, n=100);
  - ZooKeeper down: zklb keeps proxying (`disconnected`), a restart serves from
    cache_dir (`cached`), changes apply once ZooKeeper is back;
  - ZooKeeper rebuilt with older data: zklb gives the refused session up after its timeout;
  - zklb's own session expires: new session, everything re-read;
  - every registrar's session expires at once: collapse_guard holds the
    change, keep_last_known refuses the empty set, both logged and counted;
  - a client that connects before ZooKeeper answers waits and is served;
  - a 3-node ensemble loses its leader under steady traffic: no client fails;
  - malformed instance nodes are skipped and counted, the rest is routed;
  - scale (slow): 200 services x 50 instances, RSS and time to a full view.

Figures are printed (run with -s); only correctness is asserted. Every wait
is bounded, every process is stopped by PID.

    ZKLB_BUILD=build /usr/bin/python3 -m pytest tests/integration/test_zookeeper.py -q -s
"""

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter

import pytest

import harness
from harness import (ZooKeeper, ask_tag, close_all, free_addr, tags_until, wait_until,
                     zklb_config)

pytestmark = pytest.mark.zookeeper

SVC = "web"
SESSION_TIMEOUT = "2s"


# --------------------------------------------------------------------------- helpers


def curator(id_, port, host="127.0.0.1", name=SVC, **extra):
    """The JSON Curator 5 writes for one ServiceInstance."""
    doc = {"name": name, "id": id_, "address": host, "port": port, "sslPort": None,
           "payload": None, "registrationTimeUTC": int(time.time() * 1000),
           "serviceType": "DYNAMIC", "uriSpec": None}
    doc.update(extra)
    return json.dumps(doc).encode()


def zk_service(path, listen=None, **settings):
    """A service discovered from Curator nodes under path."""
    disc = {"type": "curator", "path": path}
    for k in ("keep_last_known", "collapse_guard", "collapse_hold"):
        if k in settings:
            disc[k] = settings.pop(k)
    svc = {"listen": listen or free_addr(), "discovery": disc, "connect_timeout": "1s"}
    svc.update(settings)
    return svc


def zk_section(hosts, session_timeout=SESSION_TIMEOUT):
    return {"hosts": hosts, "session_timeout": session_timeout}


def register(k, path, backend, id_=None, ephemeral=True, **extra):
    """Register backend (a harness.Backend) as a Curator instance; → node path."""
    id_ = id_ or backend.name
    node = f"{path}/{id_}"
    k.create(node, curator(id_, backend.port, **extra), makepath=True, ephemeral=ephemeral)
    return node


def service(lb, name=SVC):
    return harness.services_of(lb.admin_json("/services"))[name]


def ids(lb, name=SVC):
    """Ids of the routed instances (removed ones still draining are left out)."""
    return sorted(i["id"] for i in harness.instances_of(service(lb, name))
                  if i["state"] != "draining")


def instance(lb, id_, name=SVC):
    for i in harness.instances_of(service(lb, name)):
        if i["id"] == id_:
            return i
    return None


def wait_ids(lb, want, name=SVC, timeout=10.0):
    want = sorted(want)
    wait_until(lambda: ids(lb, name) == want, timeout, interval=0.02,
               what=f"{name} instances {want} (have {ids(lb, name)})")


def wait_discovery(lb, state, name=SVC, timeout=10.0):
    wait_until(lambda: service(lb, name)["discovery"] == state, timeout, interval=0.05,
               what=f"{name} discovery {state} (is {service(lb, name)['discovery']})")


def zk_info(lb):
    return lb.admin_json("/services")["zookeeper"]


def try_tag(addr, timeout=3.0):
    """ask_tag, or None when the connection failed or closed without a tag."""
    try:
        return ask_tag(addr, timeout) or None
    except OSError:
        return None


def hold_spread(addr, names, per=1, timeout=5.0):
    """Open connections until `per` are held on each backend in names (least_conn
    spreads them); the others are closed. → [(tag, socket)]."""
    held, extra = [], []
    deadline = time.monotonic() + timeout
    try:
        while Counter(t for t, _ in held) != Counter({n: per for n in names}):
            if time.monotonic() > deadline:
                raise AssertionError(f"could not hold {per} on each of {names}: "
                                     f"{[t for t, _ in held]}")
            t, s = ask_tag(addr, keep=True)
            if t in names and sum(1 for x, _ in held if x == t) < per:
                held.append((t, s))
            else:
                extra.append((t, s))
    except BaseException:
        close_all(held)
        raise
    finally:
        close_all(extra)
    return held


def echo_roundtrip(sock, data):
    """Send data on a tag connection (echo after the tag line); read it back."""
    sock.sendall(data)
    got = b""
    while len(got) < len(data):
        chunk = sock.recv(1 << 16)
        if not chunk:
            raise AssertionError(f"EOF after {len(got)} of {len(data)} echoed bytes")
        got += chunk
    return got


def metric(lb, name, svc=SVC):
    return lb.metrics().value(name, service=svc)


def rss_kb(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise AssertionError(f"no VmRSS for pid {pid}")


def pct(xs, p):
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(round(p / 100.0 * (len(xs) - 1))))]


def ms(x):
    return f"{x * 1000.0:.1f}ms"


def session_alive(zk_hosts, sid):
    """True while ZooKeeper lists a connection of session sid (four-letter `cons`)."""
    return f"sid=0x{sid:x}" in harness.four_letter(zk_hosts, "cons")


# A registrar in its own process: registers ephemeral nodes, says so, then idles
# until killed. SIGKILL is what a crashed or partitioned registrar looks like to
# ZooKeeper: after the session timeout every one of its ephemerals goes at once.
REGISTRAR = r"""
import json, sys, time
from kazoo.client import KazooClient
spec = json.loads(sys.argv[1])
k = KazooClient(hosts=spec["hosts"], timeout=spec["timeout"])
k.start(timeout=15)
for path, data in spec["nodes"]:
    k.create(path, data.encode(), makepath=True, ephemeral=True)
print("ready 0x%x" % k.client_id[0], flush=True)
time.sleep(120)
"""


class Registrar:
    """A kazoo client in a child process owning ephemeral instance nodes."""

    def __init__(self, hosts, nodes, timeout=2.0):
        spec = {"hosts": hosts, "timeout": timeout,
                "nodes": [(p, d.decode()) for p, d in nodes]}
        self.proc = subprocess.Popen([sys.executable, "-c", REGISTRAR, json.dumps(spec)],
                                     stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                     text=True, start_new_session=True)
        line = self._readline(20.0)
        m = re.match(r"ready 0x([0-9a-f]+)", line)
        if not m:
            self.kill()
            raise AssertionError(f"registrar did not start: {line!r}")
        self.session_id = int(m.group(1), 16)

    def _readline(self, timeout):
        out = []
        t = threading.Thread(target=lambda: out.append(self.proc.stdout.readline()),
                             daemon=True)
        t.start()
        t.join(timeout)
        return out[0] if out else ""

    def kill(self):
        if self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGKILL)
        self.proc.wait(10)


@pytest.fixture
def registrar():
    made = []

    def make(hosts, nodes, timeout=2.0):
        r = Registrar(hosts, nodes, timeout)
        made.append(r)
        return r

    yield make
    for r in made:
        r.kill()


# --------------------------------------------------------------------------- 1. adds, removes


def test_instances_added_and_removed(shared_zookeeper, zk_path, kazoo_client, backend,
                                     zklb):
    k = kazoo_client(shared_zookeeper.hosts)
    path = zk_path + "/services/web"
    b = {n: backend(n, "tag") for n in ("b1", "b2", "b3", "b4")}
    for n in ("b1", "b2", "b3"):
        register(k, path, b[n])
    lb = zklb(services={SVC: zk_service(path)},
              zookeeper=zk_section(shared_zookeeper.hosts))
    wait_ids(lb, ["b1", "b2", "b3"])
    wait_discovery(lb, "connected")
    addr = lb.listen(SVC)
    tags_until(addr, {"b1", "b2", "b3"})

    node4 = register(k, path, b["b4"])
    wait_until(lambda: try_tag(addr) == "b4", 5, interval=0.0, what="a connection to b4")
    assert set(ids(lb)) == {"b1", "b2", "b3", "b4"}

    # Hold one connection on b2, then remove b2 from ZooKeeper.
    held = hold_spread(addr, ["b2"])
    _, sock = held[0]
    try:
        k.delete(f"{path}/b2")
        wait_ids(lb, ["b1", "b3", "b4"])
        gone = instance(lb, "b2")           # listed until its last connection closes
        assert gone and gone["state"] == "draining" and gone["active"] == 1, gone
        before = b["b2"].accepts
        seen = tags_until(addr, {"b1", "b3", "b4"}, timeout=10, at_least=40)
        assert "b2" not in seen and set(seen) == {"b1", "b3", "b4"}, seen
        assert b["b2"].accepts == before
        # The open connection still works, both ways, and large enough to need
        # several reads on each side.
        data = harness.random_bytes(256 * 1024, seed=7)
        assert echo_roundtrip(sock, data) == data
        assert b["b2"].active == 1
    finally:
        close_all(held)
    b["b2"].wait_active(0)
    wait_until(lambda: instance(lb, "b2") is None, 5, what="drained b2 to leave /services")

    k.delete(node4)
    wait_ids(lb, ["b1", "b3"])
    before = b["b4"].accepts
    assert set(tags_until(addr, {"b1", "b3"}, timeout=10, at_least=20)) == {"b1", "b3"}
    assert b["b4"].accepts == before
    assert metric(lb, "zklb_discovery_bad_instances_total") == 0


# --------------------------------------------------------------------------- 2. latency


ROUNDS = 100


def test_update_latency(shared_zookeeper, zk_path, kazoo_client, backend, zklb):
    """create() returned → first connection served by the new instance;
    delete() returned → no new connection reaches it. The three old instances
    carry two held connections each, so least_conn sends every new connection
    to the new instance (0 or 1 active) for as long as it is routed."""
    k = kazoo_client(shared_zookeeper.hosts)
    path = zk_path + "/services/web"
    b = {n: backend(n, "tag") for n in ("b1", "b2", "b3", "new")}
    for n in ("b1", "b2", "b3"):
        register(k, path, b[n])
    lb = zklb(services={SVC: zk_service(path, retries=0)},
              zookeeper=zk_section(shared_zookeeper.hosts), log={"level": "warn"})
    wait_ids(lb, ["b1", "b2", "b3"])
    addr = lb.listen(SVC)
    held = hold_spread(addr, ["b1", "b2", "b3"], per=2)
    add, remove, probes = [], [], 0
    try:
        for n in range(ROUNDS):
            node = f"{path}/new{n}"
            data = curator(f"new{n}", b["new"].port)
            k.create(node, data, ephemeral=True)
            t0 = time.monotonic()
            deadline = t0 + 5
            while True:
                probes += 1
                if ask_tag(addr) == "new":
                    add.append(time.monotonic() - t0)
                    break
                assert time.monotonic() < deadline, f"new{n} never served"

            k.delete(node)
            t0 = time.monotonic()
            deadline = t0 + 5
            since_last, first_after = 0, None
            # Done after 25 probes in a row that did not reach it.
            while since_last < 25:
                start = time.monotonic()
                probes += 1
                if ask_tag(addr) == "new":
                    since_last, first_after = 0, None
                else:
                    since_last += 1
                    if first_after is None:
                        first_after = start
                assert time.monotonic() < deadline, f"new{n} still served after 5s"
            remove.append(max(0.0, first_after - t0))
    finally:
        close_all(held)
    for what, xs in (("add", add), ("remove", remove)):
        print(f"\nupdate latency {what} (through zklb, n={len(xs)}): "
              f"p50={ms(pct(xs, 50))} p99={ms(pct(xs, 99))} max={ms(max(xs))}")
    print(f"({probes} probe connections)")
    assert b["new"].accepts >= ROUNDS


# --------------------------------------------------------------------------- 3. ZooKeeper down


def test_zookeeper_down_keeps_serving_and_restart_uses_cache(zookeeper, kazoo_client,
                                                             backend, zklb, tmp_path):
    k = kazoo_client(zookeeper.hosts)
    path = "/services/web"
    b = {n: backend(n, "tag") for n in ("b1", "b2", "b3")}
    # Persistent nodes: kazoo's own session may expire while ZooKeeper is down
    # (on a loaded machine it did), and the test is about zklb's, not kazoo's.
    for n in ("b1", "b2"):
        register(k, path, b[n], ephemeral=False)
    lb = zklb(services={SVC: zk_service(path)}, zookeeper=zk_section(zookeeper.hosts, "4s"))
    wait_ids(lb, ["b1", "b2"])
    wait_discovery(lb, "connected")
    addr = lb.listen(SVC)
    cache = tmp_path / "cache" / f"{SVC}.json"
    wait_until(lambda: cache.exists() and len(json.loads(cache.read_text())["instances"]) == 2,
               5, what="cache file with 2 instances")

    zookeeper.kill()
    t0 = time.monotonic()
    wait_discovery(lb, "disconnected")
    print(f"\nZooKeeper killed: /services says disconnected after {ms(time.monotonic() - t0)}")
    assert zk_info(lb)["state"] == "disconnected"
    seen = tags_until(addr, {"b1", "b2"})
    assert set(seen) == {"b1", "b2"}
    assert metric(lb, "zklb_backend_connect_failures_total") in (0, None)

    # Restart zklb while ZooKeeper is down: the cache serves.
    assert lb.stop() == 0
    t0 = time.monotonic()
    lb2 = zklb(lb.config, name="zklb2")
    wait_ids(lb2, ["b1", "b2"], timeout=5)
    wait_discovery(lb2, "cached")
    print(f"restart with ZooKeeper down: cached view after {ms(time.monotonic() - t0)}")
    tags_until(addr, {"b1", "b2"})
    lb2.wait_for_log(r"2 instances from the cache")

    # ZooKeeper back: zklb connects and later changes apply.
    t0 = time.monotonic()
    zookeeper.start()
    t_up = time.monotonic()
    wait_discovery(lb2, "connected", timeout=20)
    print(f"ZooKeeper back (serving {ms(t_up - t0)} after start): zklb connected "
          f"{ms(time.monotonic() - t_up)} later")
    wait_until(lambda: k.connected, 20, what="kazoo reconnected")
    register(k, path, b["b3"])
    k.delete(f"{path}/b1")
    wait_ids(lb2, ["b2", "b3"])
    seen = tags_until(addr, {"b2", "b3"})
    assert "b1" not in seen


def test_zookeeper_rebuilt_with_older_data(zookeeper, kazoo_client, backend, zklb):
    """ZooKeeper comes back from a wipe (a rebuilt or restored ensemble): its last
    zxid is below the one zklb's session saw, so the server refuses zklb's
    reconnect ("client must try another server"). zklb keeps serving meanwhile,
    and should start a new session and re-read once the old one is hopeless."""
    k = kazoo_client(zookeeper.hosts)
    path = "/services/web"
    b = {n: backend(n, "tag") for n in ("b1", "b2", "b3")}
    for n in ("b1", "b2"):
        register(k, path, b[n], ephemeral=False)
    lb = zklb(services={SVC: zk_service(path)}, zookeeper=zk_section(zookeeper.hosts))
    wait_ids(lb, ["b1", "b2"])
    # Push the server's zxid well above what the rebuilt server will reach, and
    # let zklb see it (every reply, pings included, carries it).
    k.create("/zxid", b"")
    for i in range(100):
        k.set("/zxid", str(i).encode())
    k.set(f"{path}/b1", curator("b1", b["b1"].port))      # a watch event carries it too
    time.sleep(1.0)
    k.stop()
    zookeeper.stop()
    shutil.rmtree(zookeeper.data / "version-2")
    zookeeper.start()
    k2 = kazoo_client(zookeeper.hosts)
    for n in ("b2", "b3"):
        register(k2, path, b[n], ephemeral=False)
    # Serving the last-known instances all along.
    assert set(tags_until(lb.listen(SVC), {"b1", "b2"})) == {"b1", "b2"}
    t0 = time.monotonic()
    try:
        wait_ids(lb, ["b2", "b3"], timeout=8)
    finally:
        try:
            zlog = (zookeeper.dir / "zookeeper.log").read_text(errors="replace")
        except OSError:
            zlog = ""
        print(f"\nrebuilt ZooKeeper: zklb {zk_info(lb)['state']} after "
              f"{ms(time.monotonic() - t0)}; the server refused "
              f"{zlog.count('Refusing session request')} session handshakes")
    wait_discovery(lb, "connected")
    # The refused session was given up (an expiration) and a new one made. A stall
    # of the loaded machine against the 2 s session may add a give-up and a new
    # session; every session after the first follows an expiration.
    info = zk_info(lb)
    assert info["expirations"] >= 1 and info["sessions"] == info["expirations"] + 1, info


# --------------------------------------------------------------------------- 4. own session expiry


def test_own_session_expiry_resyncs(shared_zookeeper, zk_path, kazoo_client, backend, zklb):
    """zklb's session is expired by ZooKeeper while zklb is paused (SIGSTOP for
    longer than the 2s session timeout; /services does not show the session
    password, so it cannot be taken over). Changes made meanwhile apply after."""
    k = kazoo_client(shared_zookeeper.hosts)
    path = zk_path + "/services/web"
    b = {n: backend(n, "tag") for n in ("a", "b", "c", "d")}
    for n in ("a", "b"):
        register(k, path, b[n])
    lb = zklb(services={SVC: zk_service(path)},
              zookeeper=zk_section(shared_zookeeper.hosts))
    wait_ids(lb, ["a", "b"])
    wait_discovery(lb, "connected")
    old = zk_info(lb)
    sid = int(old["session_id"], 16)
    # Sessions lost to a stall (2 s timeout on a loaded machine) count as
    # expirations; every session after the first follows one.
    assert sid != 0 and old["sessions"] == old["expirations"] + 1, old
    assert session_alive(shared_zookeeper.hosts, sid)

    mark = lb.log_mark()
    os.kill(lb.pid, signal.SIGSTOP)
    try:
        t0 = time.monotonic()
        wait_until(lambda: not session_alive(shared_zookeeper.hosts, sid), 15, interval=0.1,
                   what="ZooKeeper to expire zklb's session")
        print(f"\nzklb paused: ZooKeeper expired its session after {ms(time.monotonic() - t0)}")
        register(k, path, b["c"])           # made while zklb has no session
        k.delete(f"{path}/a")
    finally:
        os.kill(lb.pid, signal.SIGCONT)
    t0 = time.monotonic()
    wait_ids(lb, ["b", "c"], timeout=15)
    print(f"resumed: re-synced view after {ms(time.monotonic() - t0)}")
    wait_discovery(lb, "connected")
    new = zk_info(lb)
    assert new["session_id"] != old["session_id"]
    assert new["expirations"] >= old["expirations"] + 1, (old, new)
    assert new["sessions"] == new["expirations"] + 1, new
    lb.wait_for_log(r"zookeeper: .*-> expired", since=mark)
    register(k, path, b["d"])               # after the expiry: watches were re-armed
    wait_ids(lb, ["b", "c", "d"])
    assert set(tags_until(lb.listen(SVC), {"b", "c", "d"})) == {"b", "c", "d"}


# --------------------------------------------------------------------------- 5. registrars collapse


def test_registrar_sessions_expire_at_once(shared_zookeeper, zk_path, kazoo_client,
                                           registrar, backend, zklb):
    """One registrar process owns every instance of `api` and four of the five of
    `web`; it dies, and after its session timeout ZooKeeper deletes all of its
    ephemerals in one go. web (5 → 1) is a collapse: held for collapse_hold,
    served meanwhile, then applied. api (4 → 0): keep_last_known never applies
    it; zklb keeps routing to the four."""
    k = kazoo_client(shared_zookeeper.hosts)
    web, api = zk_path + "/services/web", zk_path + "/services/api"
    w = {n: backend(n, "tag") for n in ("w1", "w2", "w3", "w4", "w5")}
    a = {n: backend(n, "tag") for n in ("a1", "a2", "a3", "a4")}
    nodes = [(f"{web}/{n}", curator(n, w[n].port)) for n in ("w1", "w2", "w3", "w4")]
    nodes += [(f"{api}/{n}", curator(n, a[n].port, name="api")) for n in a]
    reg = registrar(shared_zookeeper.hosts, nodes, timeout=2.0)
    register(k, web, w["w5"])               # a stable registrar's instance
    lb = zklb(services={
        # Long enough for the checks made during the hold on a loaded machine.
        "web": zk_service(web, collapse_hold="5s"),
        "api": zk_service(api, collapse_hold="5s"),
    }, zookeeper=zk_section(shared_zookeeper.hosts))
    wait_ids(lb, list(w), "web")
    wait_ids(lb, list(a), "api")

    mark = lb.log_mark()
    reg.kill()
    t_kill = time.monotonic()
    # The ephemerals went after the start of the last poll that still saw a1:
    # zklb's hold cannot have begun before it.
    last_seen = [t_kill]

    def vanished():
        t = time.monotonic()
        if k.exists(f"{api}/a1"):
            last_seen[0] = t
            return False
        return True
    wait_until(vanished, 15, interval=0.05, what="the registrar's ephemerals to vanish")
    t_gone = last_seen[0]
    print(f"\nregistrar killed: its ephemerals gone after {ms(t_gone - t_kill)}")
    lb.wait_for_log(r"svc=web: a change to 1 instances \(serving 5\) is a collapse", since=mark)
    lb.wait_for_log(r"svc=api: ZooKeeper lists no usable instance; keeping the 4 last-known",
                    since=mark)
    assert service(lb, "web")["holding"] is True
    # Both keep routing to every instance they had.
    assert set(tags_until(lb.listen("web"), set(w))) == set(w)
    assert set(tags_until(lb.listen("api"), set(a))) == set(a)
    assert metric(lb, "zklb_discovery_held_changes_total", "web") == 1
    assert metric(lb, "zklb_discovery_kept_total", "api") == 1
    assert ids(lb, "web") == sorted(w)

    # The hold expires: web applies the collapse; api still keeps its four.
    wait_ids(lb, ["w5"], "web", timeout=10)
    held_for = time.monotonic() - t_gone
    print(f"web collapse applied {held_for:.2f}s after the nodes vanished (collapse_hold 5s)")
    assert held_for >= 4.5
    assert set(Counter(ask_tag(lb.listen("web")) for _ in range(10))) == {"w5"}
    assert ids(lb, "api") == sorted(a)
    assert set(tags_until(lb.listen("api"), set(a))) == set(a)
    assert metric(lb, "zklb_discovery_kept_total", "api") == 1
    log = lb.log()[mark:]
    print("\n".join(ln for ln in log.splitlines()
                    if " WARN" in ln.upper() and ("collapse" in ln or "keeping" in ln)))

    # One of api's four comes back. Measured against the four still served, a
    # view of one is itself a collapse: held for collapse_hold, then applied.
    mark = lb.log_mark()
    t0 = time.monotonic()                   # the hold cannot start before the create
    k.create(f"{api}/a1", curator("a1", a["a1"].port, name="api"), ephemeral=True)
    lb.wait_for_log(r"svc=api: a change to 1 instances \(serving 4\) is a collapse",
                    since=mark)
    assert ids(lb, "api") == sorted(a)
    wait_ids(lb, ["a1"], "api", timeout=10)
    assert time.monotonic() - t0 >= 4.5
    assert metric(lb, "zklb_discovery_held_changes_total", "api") == 1


# --------------------------------------------------------------------------- 6. client before view


def test_client_waits_for_first_view(tmp_path, kazoo_client, backend, zklb):
    """zklb starts with ZooKeeper down and nothing cached; a client connects and
    waits (connect_timeout 20s: a cold JVM start on a loaded machine takes a while);
    ZooKeeper comes up with the instances → served."""
    zk = ZooKeeper(tmp_path / "zk-late")
    try:
        b1 = backend("b1", "tag")
        # Persistent instance nodes written beforehand; the server is then stopped.
        zk.start()
        k = kazoo_client(zk.hosts)
        register(k, "/services/web", b1, ephemeral=False)
        k.stop()
        zk.stop()

        lb = zklb(services={SVC: zk_service("/services/web", connect_timeout="20s")},
                  zookeeper=zk_section(zk.hosts))
        assert service(lb, SVC)["discovery"] == "pending"
        addr = lb.listen(SVC)
        result = {}

        def client():
            t0 = time.monotonic()
            try:
                result["tag"] = ask_tag(addr, timeout=30)
            except OSError as e:
                result["error"] = repr(e)
            result["waited"] = time.monotonic() - t0

        t = threading.Thread(target=client, daemon=True)
        t.start()
        # Accepted by zklb and waiting, not refused.
        wait_until(lambda: lb.metrics().value("zklb_connections_active") == 1, 3,
                   what="the client to be accepted")
        time.sleep(0.3)
        assert t.is_alive(), result
        assert service(lb, SVC)["discovery"] == "pending"
        t_zk = time.monotonic()
        zk.start()
        print(f"\nZooKeeper started in {ms(time.monotonic() - t_zk)}")
        t.join(30)
        assert not t.is_alive()
        print(f"client waited {ms(result['waited'])} in all and was served by "
              f"{result.get('tag')}")
        assert result.get("tag") == "b1", result
        wait_discovery(lb, "connected")
    finally:
        zk.cleanup()


# --------------------------------------------------------------------------- 7. ensemble


def test_ensemble_leader_failover_under_traffic(ensemble, kazoo_client, backend, zklb):
    k = kazoo_client(ensemble.hosts)
    path = "/services/web"
    b = {n: backend(n, "tag") for n in ("b1", "b2", "b3")}
    # Persistent nodes: kazoo's own session is not the subject.
    for n in ("b1", "b2"):
        register(k, path, b[n], ephemeral=False)
    # A 10 s session (the most tickTime 500 allows: 20 ticks) outlasts the election on
    # a loaded machine, so zklb never gives it up.
    lb = zklb(services={SVC: zk_service(path)}, zookeeper=zk_section(ensemble.hosts, "10s"))
    wait_ids(lb, ["b1", "b2"])
    wait_discovery(lb, "connected")
    addr = lb.listen(SVC)

    stop = threading.Event()
    stats = Counter()
    errors = []
    served = []                     # (start, end) of each connection that got its tag
    rate = 300.0                    # short connections per second, one client thread

    def traffic():
        t0 = time.monotonic()
        n = 0
        while not stop.is_set() and time.monotonic() - t0 < 20:
            n += 1
            due = t0 + n / rate
            d = due - time.monotonic()
            if d > 0:
                time.sleep(d)
            start = time.monotonic()
            try:
                tag = ask_tag(addr, timeout=3)
                stats["ok" if tag else "empty"] += 1
                if tag:
                    served.append((start, time.monotonic()))
            except OSError as e:
                stats["failed"] += 1
                errors.append(repr(e))

    threads = [threading.Thread(target=traffic, daemon=True)]
    for t in threads:
        t.start()
    time.sleep(1.0)
    leader = ensemble.kill_leader()
    t_kill = time.monotonic()
    wait_discovery(lb, "disconnected", timeout=10)
    t_lost = time.monotonic()
    wait_discovery(lb, "connected", timeout=30)
    t_back = time.monotonic()
    time.sleep(max(0.0, t_kill + 3.0 - time.monotonic()))
    stop.set()
    for t in threads:
        t.join(10)
    mx = lb.metrics()
    print(f"\nensemble: killed leader {leader.hosts}; zklb disconnected after "
          f"{ms(t_lost - t_kill)}, connected again after {ms(t_back - t_kill)}; "
          f"traffic {dict(stats)} at ~{rate:.0f}/s; "
          f"zklb_zookeeper_disconnects_total={mx.value('zklb_zookeeper_disconnects_total')} "
          f"sessions={mx.value('zklb_zookeeper_sessions_total')}; "
          f"{sum(1 for s, _ in served if t_kill <= s <= t_back)} served connections "
          f"started during the failover")
    assert stats["failed"] == 0 and stats["empty"] == 0, (stats, errors[:5])
    # The client's pace depends on the machine; what matters is that there was
    # traffic, and that connections made while zklb had no ZooKeeper were served.
    assert stats["ok"] >= 100, stats
    during = [s for s, _ in served if t_kill <= s <= t_back]
    assert during, (f"no connection started during the failover "
                    f"({ms(t_back - t_kill)}); {dict(stats)}")

    # The surviving quorum serves changes.
    register(k, path, b["b3"])
    wait_ids(lb, ["b1", "b2", "b3"], timeout=15)
    # Normally the same session across the failover. A new leader that takes
    # longer than the session timeout to form (four suites at once on two
    # cores did that once: kazoo's session expired too) expires it server-side;
    # then zklb opens exactly one new session per expiry, and the check above
    # (b3 routed) shows the new session re-watched everything.
    info = zk_info(lb)
    assert info["sessions"] == info["expirations"] + 1, info
    if info["sessions"] > 1:
        print(f"the ensemble expired the session during the election: {info}")


# --------------------------------------------------------------------------- 8. malformed nodes


def test_malformed_nodes_skipped_and_counted(shared_zookeeper, zk_path, kazoo_client,
                                             backend, closed_port, zklb):
    k = kazoo_client(shared_zookeeper.hosts)
    path = zk_path + "/services/web"
    b = {n: backend(n, "tag") for n in ("good1", "good2", "huge")}
    trap = closed_port()                     # routed by mistake → connect failures
    k.ensure_path(path)
    register(k, path, b["good1"], ephemeral=False)
    register(k, path, b["good2"], ephemeral=False)
    # A valid instance with a ~1 MiB payload (ZooKeeper's default limit is 1 MiB):
    # read in full, and routed.
    k.create(f"{path}/huge", curator("huge", b["huge"].port, payload="p" * 1_000_000))
    bad = {
        "notjson": b"{this is not json",
        "noport": json.dumps({"name": SVC, "id": "noport", "address": "127.0.0.1"}).encode(),
        "port70000": curator("port70000", 70000),
        "badtype": curator("badtype", trap.port, serviceType="SOMETHING_ELSE"),
        "hugejunk": b"\x00junk" * 200_000,
    }
    for name, data in bad.items():
        k.create(f"{path}/{name}", data)
    # Curator's identity is the node name (ServiceCache keys by it); this node's
    # JSON repeats good1's id and endpoint.
    k.create(f"{path}/dupid", curator("good1", b["good1"].port))

    lb = zklb(services={SVC: zk_service(path, retries=0)},
              zookeeper=zk_section(shared_zookeeper.hosts))
    wait_discovery(lb, "connected")
    got = ids(lb)
    print(f"\nrouted: {got}")
    log = lb.log()
    for name in bad:
        assert f"node={name} skipped" in log, name
    for line in log.splitlines():
        if "skipped" in line:
            print(line[:200])
    # The duplicate is either its own instance (named by its node) or skipped
    # and counted; never both, never a crash.
    n_bad = len(bad) + (0 if "dupid" in got else 1)
    assert metric(lb, "zklb_discovery_bad_instances_total") == n_bad
    assert service(lb)["bad_instances"] == n_bad
    assert {"good1", "good2", "huge"} <= set(got) and len(got) == 4 - (n_bad - len(bad))
    assert not set(bad) & set(got)

    seen = Counter(try_tag(lb.listen(SVC)) for _ in range(60))
    print(f"traffic: {dict(seen)}")
    assert set(seen) == {"good1", "good2", "huge"}, seen
    assert metric(lb, "zklb_backend_connect_failures_total") in (0, None)

    # Fixing a bad node makes it routable; breaking a good one removes it and counts.
    k.set(f"{path}/port70000", curator("port70000", b["good2"].port))
    k.set(f"{path}/good1", b"[]")
    wait_until(lambda: "port70000" in ids(lb) and "good1" not in ids(lb), 5,
               what="fixed node in, broken node out")
    assert metric(lb, "zklb_discovery_bad_instances_total") == n_bad + 1
    assert lb.running()


# --------------------------------------------------------------------------- 9. scale


APPLIED_RE = re.compile(r"svc=(svc\d+) view applied: (\d+) instances")


@pytest.mark.slow
def test_scale_200_services_50_instances(shared_zookeeper, zk_path, kazoo_client, zklb):
    """One zklb (A) watches 200 services (unix listeners) while 200 x 50 instances
    are registered; a second one (B) starts against the populated tree with
    nothing cached. Completion is read from the log ("view applied: 50
    instances" for every service), so that RSS is measured before any big
    /services answer is built; one /services then confirms the full view."""
    n_svc, per = 200, 50
    k = kazoo_client(shared_zookeeper.hosts)
    base = zk_path + "/scale"
    sockdir = tempfile.mkdtemp(prefix="zklb-scale-", dir="/tmp")
    try:
        def config(tag):
            d = os.path.join(sockdir, tag)
            os.makedirs(d, exist_ok=True)
            svcs = {f"svc{i}": zk_service(f"{base}/svc{i}", listen=f"unix:{d}/svc{i}.sock")
                    for i in range(n_svc)}
            return zklb_config(svcs, workdir=d,
                               zookeeper=zk_section(shared_zookeeper.hosts, "10s"))

        def full_in_log(lb):
            last = {}
            for m in APPLIED_RE.finditer(lb.log()):
                last[m.group(1)] = int(m.group(2))
            return len(last) == n_svc and all(v == per for v in last.values())

        def full(lb):
            svcs = harness.services_of(lb.admin_json("/services"))
            counts = [len(harness.instances_of(x)) for x in svcs.values()]
            return (len(counts) == n_svc and all(c == per for c in counts)
                    and all(x["discovery"] == "connected" for x in svcs.values()))

        def all_connected(lb):
            svcs = harness.services_of(lb.admin_json("/services"))
            return all(x["discovery"] == "connected" for x in svcs.values())

        # zklb A watches 200 absent paths: the baseline.
        t0 = time.monotonic()
        lb_a = zklb(config("a"), name="zklb-a")
        wait_until(lambda: all_connected(lb_a), 20, interval=0.1, what="200 services connected")
        t_a_up = time.monotonic() - t0
        time.sleep(0.3)
        rss_base = rss_kb(lb_a.pid)

        # Register 10,000 instances: one transaction per service, all pipelined.
        t0 = time.monotonic()
        k.ensure_path(base)
        results = []
        for i in range(n_svc):
            tx = k.transaction()
            tx.create(f"{base}/svc{i}")
            for j in range(per):
                tx.create(f"{base}/svc{i}/i{j}",
                          curator(f"i{j}", 10000 + j, name=f"svc{i}",
                                  payload={"zone": "a", "shard": j}))
            results.append(tx.commit_async())
        for r in results:
            out = r.get(timeout=30)
            assert not any(isinstance(x, Exception) for x in out), out[:3]
        t_reg = time.monotonic() - t0
        wait_until(lambda: full_in_log(lb_a), 30, interval=0.05, what="A: 200 x 50 in the log")
        t_a_full = time.monotonic() - t0
        time.sleep(0.3)
        rss_a = rss_kb(lb_a.pid)
        assert full(lb_a)
        rss_a_admin = rss_kb(lb_a.pid)
        admin_cost = {}
        for what in ("/services", "/metrics"):
            t1 = time.monotonic()
            status, _, body = lb_a.admin_get(what, timeout=20)
            assert status == 200
            admin_cost[what] = (time.monotonic() - t1, len(body))

        # zklb B starts against the populated tree (nothing cached): cold sync.
        lb_b = zklb(config("b"), name="zklb-b", start=False)
        t0 = time.monotonic()
        lb_b.start(wait=False)
        wait_until(lambda: full_in_log(lb_b), 30, interval=0.05, what="B: 200 x 50 in the log")
        t_b_full = time.monotonic() - t0
        time.sleep(0.3)
        rss_b = rss_kb(lb_b.pid)
        assert full(lb_b)

        per_inst = (rss_a - rss_base) * 1024 / (n_svc * per)
        print(f"\nscale: {n_svc} services x {per} instances = {n_svc * per}, "
              f"{lb_a.admin_json('/services')['workers']} workers")
        print(f"  A: up with 200 empty services in {t_a_up:.2f}s; RSS baseline {rss_base} kB")
        print(f"  A: {n_svc * per} nodes registered in {t_reg:.2f}s; full view "
              f"{t_a_full:.2f}s after the first create; RSS {rss_a} kB "
              f"(+{rss_a - rss_base} kB = {per_inst:.0f} B/instance); "
              f"{rss_a_admin} kB after one GET /services")
        print("  A: " + "; ".join(f"GET {w} {ms(t)} ({n / 1e6:.1f} MB)"
                                  for w, (t, n) in admin_cost.items()))
        print(f"  B: cold start on the populated tree: full view {t_b_full:.2f}s after "
              f"exec; RSS {rss_b} kB")
        assert lb_a.running() and lb_b.running()
    finally:
        shutil.rmtree(sockdir, ignore_errors=True)


def test_zookeeper_value_cannot_forge_a_log_line(shared_zookeeper, zk_path, kazoo_client,
                                                 backend, zklb):
    """A value from ZooKeeper that zklb quotes in a log line (an unknown
    serviceType) carries a newline and a fake log line: it stays inside one
    line, its control bytes escaped (issue 12)."""
    k = kazoo_client(shared_zookeeper.hosts)
    path = zk_path + "/services/web"
    b1 = backend("b1", "tag")
    register(k, path, b1)
    forged = "2026-01-01 error FORGED"	# within the 40 bytes the reason quotes
    k.create(f"{path}/evil", curator("evil", b1.port, serviceType="X\n" + forged))
    lb = zklb(services={SVC: zk_service(path)}, zookeeper=zk_section(shared_zookeeper.hosts))
    wait_ids(lb, ["b1"])
    lb.wait_for_log(r"node=evil skipped: unknown serviceType")
    lines = [l for l in lb.log().splitlines() if "FORGED" in l]
    assert lines and all("node=evil skipped: unknown serviceType" in l for l in lines), lines
    assert all("X\\x0a2026-01-01 error FORGED" in l for l in lines), lines
    assert not any(l.startswith(forged) for l in lb.log().splitlines())
