"""The calling side of the zklb-to-zklb trunk (services with `via: trunk|auto`).

Two zklb processes play two hosts: the remote one on 127.0.0.3 announces a
`zklb-bench serve` echo backend (and a closed port) and accepts trunks there;
the calling one on 127.0.0.2 discovers the instances in the same ZooKeeper
and relays each client connection as one HTTP/2 stream of a trunk to
127.0.0.3, over mutual TLS with a certificate per host (IP SANs, both sides
verify).

Covered: many short client connections ride a handful of host-to-host TCP
connections (10,000 counted with ss); byte-exact transfers from 1 B to 64 MiB over
concurrent streams; half-close both ways; a slow reader beside fast ones; a
remote backend that refuses (the caller retries on another instance and
counts the failure against the refusing one); an instance without a trunk
under `via: trunk` (not routable, /services says so) and under `via: auto`
(direct); the trunk killed mid-transfer (streams fail, new ones succeed on a
new trunk); a trunk whose certificate does not name the peer (a failed
connect); resets both ways (a remote backend's reset mid-transfer reaches
the client as a TCP RST, one before the first byte is a failure of that
instance, a client's RST reaches the remote backend as a reset); Debian's
MariaDB behind the remote host, queried with its own client through the
trunk. Every wait and every loop is bounded; processes are stopped by PID.
"""

import json
import signal
import socket
import subprocess
import threading
import time

import pytest

import harness
from harness import free_port, zk_section
from test_tls import Pki, _openssl
from test_trunk import Echo

pytestmark = pytest.mark.zookeeper

REMOTE = "127.0.0.3"        # the host with the backend and its trunk listener
CALLER = "127.0.0.2"        # the host whose clients use the trunk


def host_cert(pki, name, ip):
    """A host certificate for both roles of the trunk (serverAuth and clientAuth), IP SAN ip."""
    d = pki.dir
    _openssl("req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
             "-keyout", f"{name}.key", "-out", f"{name}.csr", "-subj", f"/CN={name}", cwd=d)
    (d / f"{name}.ext").write_text(f"subjectAltName=IP:{ip}\n"
                                   "extendedKeyUsage=serverAuth,clientAuth\n")
    _openssl("x509", "-req", "-in", f"{name}.csr", "-CA", "ca.pem", "-CAkey", "ca.key",
             "-CAcreateserial", "-out", f"{name}.pem", "-days", "30", "-extfile", f"{name}.ext",
             cwd=d)
    (d / f"{name}.key").chmod(0o600)
    return {"ca": str(pki.ca), "cert": str(d / f"{name}.pem"), "key": str(d / f"{name}.key")}


@pytest.fixture(scope="module")
def pki(tmp_path_factory):
    p = Pki(tmp_path_factory.mktemp("pki"))
    p.remote = host_cert(p, "remote", REMOTE)
    p.caller = host_cert(p, "caller", CALLER)
    p.liar = host_cert(p, "liar", "127.0.0.9")     # a trusted certificate for another host
    return p


@pytest.fixture
def echo():
    e = Echo()
    yield e
    e.stop()


CHECK = {"type": "tcp", "interval": "100ms", "timeout": "200ms", "rise": 1, "fall": 2}


def start_remote(zklb, zk, pki, echo, zk_path, tls=None, name=None, mixed=False):
    """zklb as host REMOTE: announces echo; with mixed, also service `mixed` = the echo
    and a port that refuses (registered while a placeholder listened there)."""
    host, port = echo.addr.rsplit(":", 1)
    closed = free_port(REMOTE)
    trunk = f"{REMOTE}:{free_port(REMOTE)}"
    announce = [{"service": "echo", "base_path": zk_path, "address": host, "port": int(port),
                 "check": CHECK}]
    placeholder = None
    if mixed:
        placeholder = socket.create_server((REMOTE, closed))
        # Up at its first check; then it takes 1000 failed checks (>= 100 s) to go down.
        once = {"type": "tcp", "interval": "100ms", "timeout": "200ms", "rise": 1, "fall": 1000}
        announce += [{"service": "mixed", "base_path": zk_path, "address": host,
                      "port": int(port), "check": CHECK},
                     {"service": "mixed", "base_path": zk_path, "address": REMOTE,
                      "port": closed, "check": once}]
    try:
        z = zklb(services={}, zookeeper=zk_section(zk), name=name, announce=announce,
                 trunk={"listen": trunk, "tls": tls or pki.remote, "stream_window": "1m",
                        "connection_window": "16m"})
        z.wait_for_log(r"trunk: listening on", timeout=10)
        if mixed:
            harness.wait_until(lambda: z.metrics().value("zklb_announce_registrations_total")
                               == 3, 15, what="three registrations")
    finally:
        if placeholder:
            placeholder.close()
    z.trunk = trunk
    z.closed = closed
    return z


def start_caller(zklb, zk, pki, zk_path, via="trunk", services=("echo",), svc_settings=None,
                 **trunk):
    svcs = {}
    for s in services:
        svcs[s] = {"listen": f"{CALLER}:{free_port(CALLER)}",
                   "discovery": {"type": "curator", "path": f"{zk_path}/{s}"},
                   "via": via, "connect_timeout": "3s", "retries": 2,
                   "health": {"failures_to_eject": 1, "base_ejection": "30s"},
                   **(svc_settings or {})}
    t = {"listen": f"{CALLER}:{free_port(CALLER)}", "tls": pki.caller,
         "stream_window": "1m", "connection_window": "16m"}
    t.update(trunk)
    z = zklb(services=svcs, zookeeper=zk_section(zk), trunk=t, name="caller")
    for s in services:
        harness.wait_until(lambda s=s: any(i["address"] == REMOTE or i["address"].startswith(REMOTE)
                                           for i in harness.instances_of(
                                               harness.services_of(z.services())[s])),
                           15, what=f"{s} discovered")
    return z


@pytest.fixture
def remote(zklb, shared_zookeeper, pki, echo, zk_path):
    return start_remote(zklb, shared_zookeeper, pki, echo, zk_path, name="remote")


@pytest.fixture
def caller(zklb, shared_zookeeper, pki, zk_path, remote):
    return start_caller(zklb, shared_zookeeper, pki, zk_path)


def trunk_sockets(remote):
    """Host-to-host TCP sockets on the remote's trunk port (both ends, any state)."""
    port = remote.trunk.rsplit(":", 1)[1]
    out = subprocess.run(["ss", "-Htan", f"( sport = :{port} or dport = :{port} )"],
                         capture_output=True, text=True, timeout=10).stdout.splitlines()
    return [line for line in out if not line.startswith("LISTEN")]


def host_to_host_sockets(*ports):
    """TCP sockets (both ends, any state) between CALLER and REMOTE to or from one
    of ports on REMOTE (earlier tests' connections may linger in TIME-WAIT)."""
    out = []
    for port in ports:
        out += subprocess.run(["ss", "-Htan", f"( src {CALLER} and dst {REMOTE}:{port} ) or "
                               f"( src {REMOTE}:{port} and dst {CALLER} )"],
                              capture_output=True, text=True, timeout=10).stdout.splitlines()
    return [line for line in out if not line.startswith("LISTEN")]


def roundtrip(addr, data, timeout=60.0):
    return harness.stream(addr, data, timeout=timeout)


def listen_of(z, svc):
    return z.config["services"][svc]["listen"]


def test_short_connections_share_one_trunk(remote, caller, echo):
    """10,000 short client connections (in 8 threads) ride at most a handful of
    host-to-host TCP connections; the remote's streams count them all."""
    addr = listen_of(caller, "echo")
    n_threads, per_thread = 8, 1250
    bad = []

    def worker(k):
        for i in range(per_thread):
            msg = f"{k}:{i}\n".encode() * 4
            try:
                got = roundtrip(addr, msg, timeout=20)
            except OSError as e:
                bad.append(repr(e))
                continue
            if got != msg:
                bad.append((k, i, len(got)))

    t0 = time.monotonic()
    threads = [threading.Thread(target=worker, args=(k,)) for k in range(n_threads)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    ms = int((time.monotonic() - t0) * 1000)
    assert not any(t.is_alive() for t in threads), "clients still running after 120 s"
    assert not bad, bad[:5]
    sockets = trunk_sockets(remote)
    assert len(sockets) <= 4, sockets           # one connection: its two ends
    # Between the two hosts' addresses, to the trunk or to the backend itself: that
    # one connection only.
    between = host_to_host_sockets(remote.trunk.rsplit(":", 1)[1], echo.addr.rsplit(":", 1)[1])
    assert len(between) == 2, between
    remote.wait_for_log(rf"trunk peer={CALLER}:\d+: open")
    m = remote.metrics()
    assert m.value("zklb_trunk_connections_accepted_total") == 1
    assert m.value("zklb_trunk_streams_total") == n_threads * per_thread
    c = caller.metrics()
    assert c.value("zklb_trunk_peer_streams_total", peer=remote.trunk) == n_threads * per_thread
    assert c.value("zklb_trunk_peer_connections", peer=remote.trunk) == 1
    peers = caller.admin_json("/services")["trunk_peers"]
    assert [(p["peer"], p["connections"], p["streams"], p["stream_failures"]) for p in peers] \
        == [(remote.trunk, 1, n_threads * per_thread, 0)], peers
    page = caller.admin_get("/")[2].decode()
    assert "trunk peers" in page and remote.trunk in page
    svc = caller.services()["echo"]
    assert svc["via"] == "trunk"
    assert harness.instances_of(svc)[0]["trunk"] == int(remote.trunk.rsplit(":", 1)[1])
    print(f"\ntrunk call: {n_threads * per_thread} client connections in {ms} ms, "
          f"{len(between)} sockets between {CALLER} and {REMOTE}")


def test_byte_exact_from_1_byte_to_64_mib(remote, caller):
    addr = listen_of(caller, "echo")
    for n, size in ((4, 1), (16, 1000), (16, 300_000), (4, 4 << 20), (2, 16 << 20), (1, 64 << 20)):
        datas = [harness.random_bytes(size, seed=size + k) for k in range(n)]
        got = [None] * n

        def one(k):
            try:
                got[k] = roundtrip(addr, datas[k], timeout=90)
            except OSError as e:
                got[k] = e

        threads = [threading.Thread(target=one, args=(k,)) for k in range(n)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(120)
        for k in range(n):
            assert isinstance(got[k], bytes), (n, size, k, got[k])
            assert got[k] == datas[k], (n, size, k, len(got[k]))
    assert len(trunk_sockets(remote)) <= 2


def test_half_close_both_ways(remote, caller, echo):
    addr = listen_of(caller, "echo")
    # The client's FIN reaches the backend (END_STREAM, SHUT_WR); the echo's FIN comes back.
    s = harness.connect(addr, timeout=10)
    s.sendall(b"hello")
    s.shutdown(socket.SHUT_WR)
    assert harness.recv_all(s, timeout=10) == b"hello"
    s.close()
    # No byte at all, only the FIN: the stream still ends cleanly both ways.
    s = harness.connect(addr, timeout=10)
    s.shutdown(socket.SHUT_WR)
    assert harness.recv_all(s, timeout=10) == b""
    s.close()
    harness.wait_until(lambda: echo.status()["open"] == 0, 10, what="backend connections closed")


def test_slow_reader_does_not_stall_the_others(remote, caller):
    """One client sends (up to 32 MiB) and never reads: its stream's windows fill. Eight others,
    2 MiB each through the same trunk, must all finish byte-exact."""
    addr = listen_of(caller, "echo")
    slow = harness.connect(addr, timeout=30)
    stop = threading.Event()

    def stuff():
        data = b"x" * 65536
        try:
            for _ in range(512):     # up to 32 MiB: more than every buffer on the way
                if stop.is_set():
                    return
                slow.sendall(data)
        except OSError:
            pass

    t = threading.Thread(target=stuff)
    t.start()
    try:
        harness.wait_until(lambda: remote.metrics().value("zklb_trunk_window_stalls_total") >= 1,
                           20, what="the slow stream stalled")
        datas = [harness.random_bytes(2 << 20, seed=k) for k in range(8)]
        got = [None] * 8

        def one(k):
            try:
                got[k] = roundtrip(addr, datas[k], timeout=60)
            except OSError as e:
                got[k] = e

        t0 = time.monotonic()
        threads = [threading.Thread(target=one, args=(k,)) for k in range(8)]
        for th in threads:
            th.start()
        for th in threads:
            th.join(90)
        ms = int((time.monotonic() - t0) * 1000)
        assert all(g == d for g, d in zip(got, datas)), [type(g) for g in got]
        print(f"\ntrunk call: 8 x 2 MiB in {ms} ms beside a stalled stream")
    finally:
        stop.set()
        slow.shutdown(socket.SHUT_RDWR)     # wakes the blocked sendall (close would not)
        t.join(30)
        slow.close()
    assert not t.is_alive()


def test_remote_backend_refusing_is_a_failed_connect(zklb, shared_zookeeper, pki, echo, zk_path):
    """`mixed` has two instances on the remote host, one refusing (502 over the trunk):
    every client still gets the echo (retried on the other), and the refusing one
    is counted and ejected on the calling side."""
    remote = start_remote(zklb, shared_zookeeper, pki, echo, zk_path, name="remote", mixed=True)
    z = start_caller(zklb, shared_zookeeper, pki, zk_path, services=("mixed",))
    harness.wait_until(lambda: len(harness.instances_of(
        harness.services_of(z.services())["mixed"])) == 2, 15, what="two instances")
    addr = listen_of(z, "mixed")
    for i in range(10):
        assert roundtrip(addr, b"ping %d\n" % i, timeout=20) == b"ping %d\n" % i
    m = z.metrics()
    closed = f"{REMOTE}:{remote.closed}"
    assert m.value("zklb_backend_connect_failures_total", service="mixed", backend=closed) >= 1
    assert remote.metrics().value("zklb_trunk_connect_failures_total") >= 1
    z.wait_for_log(r"trunk: refused")


def test_instance_without_trunk(zklb, shared_zookeeper, kazoo_client, pki, zk_path):
    """A plain backend registered by hand (no zklb.trunk in its payload): under
    via: trunk it is not routable and /services says why; under via: auto the
    caller connects to it directly."""
    b = harness.Backend(host=CALLER).start()
    try:
        k = kazoo_client(shared_zookeeper.hosts)
        doc = {"name": "plain", "id": "p1", "address": CALLER, "port": b.port, "sslPort": None,
               "payload": None, "registrationTimeUTC": 0, "serviceType": "DYNAMIC",
               "uriSpec": None}
        k.create(f"{zk_path}/plain/p1", json.dumps(doc).encode(), makepath=True)
        svcs = {}
        for via in ("trunk", "auto"):
            svcs[via] = {"listen": f"{CALLER}:{free_port(CALLER)}",
                         "discovery": {"type": "curator", "path": f"{zk_path}/plain"},
                         "via": via, "connect_timeout": "1s"}
        z = zklb(services=svcs, zookeeper=zk_section(shared_zookeeper),
                 trunk={"listen": f"{CALLER}:{free_port(CALLER)}", "tls": pki.caller},
                 name="plain-caller")
        harness.wait_until(lambda: len(harness.instances_of(
            harness.services_of(z.services())["trunk"])) == 1, 15, what="discovered")
        inst = harness.instances_of(harness.services_of(z.services())["trunk"])[0]
        assert inst["trunk"] is None and "zklb.trunk" in inst["unroutable"], inst
        auto = harness.instances_of(harness.services_of(z.services())["auto"])[0]
        assert auto["trunk"] is None and "unroutable" not in auto, auto
        s = harness.connect(listen_of(z, "trunk"), timeout=5)
        assert harness.closed_within(s, 5) is not None
        s.close()
        assert b.accepts == 0
        s = harness.connect(listen_of(z, "auto"), timeout=5)
        assert harness.echo_roundtrip(s, b"hi\n") == b"hi\n"
        s.close()
        assert b.accepts == 1
    finally:
        b.stop()


def test_trunk_killed_mid_transfer(zklb, shared_zookeeper, pki, echo, zk_path):
    """The remote zklb dies (SIGKILL) while 4 streams carry data: the clients'
    connections end with a TCP RST (none hangs, none passes for complete), and
    once it is back new connections work on a new trunk."""
    r = start_remote(zklb, shared_zookeeper, pki, echo, zk_path, name="remote1")
    z = start_caller(zklb, shared_zookeeper, pki, zk_path)
    addr = listen_of(z, "echo")
    socks = []
    for _ in range(4):
        s = harness.connect(addr, timeout=10)
        s.sendall(b"a" * 100_000)
        socks.append(s)
    harness.wait_until(lambda: echo.status()["open"] == 4, 20, what="4 backend connections")
    r.kill()
    for s in socks:
        assert harness.read_to_the_end(s, 20)[0] == "reset"
        s.close()
    # A new remote on the same trunk port (the instances in ZooKeeper are unchanged).
    r2 = zklb(r.config, name="remote2")
    r2.wait_for_log(r"trunk: listening on", timeout=10)
    harness.wait_until(lambda: _echo_ok(addr), 30, interval=0.5, what="a stream on a new trunk")
    assert z.running()
    c = z.metrics()
    assert c.value("zklb_trunk_peer_connections_opened_total", peer=r.trunk) >= 2


def _echo_ok(addr):
    try:
        return roundtrip(addr, b"again\n", timeout=5) == b"again\n"
    except OSError:
        return False


def test_peer_certificate_not_naming_the_host_fails(zklb, shared_zookeeper, pki, echo, zk_path):
    """The remote presents a certificate of the right CA for another address: the
    caller's handshake fails, the client gets no backend, nothing is relayed."""
    start_remote(zklb, shared_zookeeper, pki, echo, zk_path, tls=pki.liar, name="liar")
    z = start_caller(zklb, shared_zookeeper, pki, zk_path)
    s = harness.connect(listen_of(z, "echo"), timeout=10)
    s.sendall(b"x")
    assert harness.closed_within(s, 15) is not None
    s.close()
    z.wait_for_log(r"TLS handshake failed", timeout=10)
    assert echo.status()["open"] == 0
    m = z.metrics()
    assert m.value("zklb_trunk_peer_handshake_failures_total") >= 1


def test_address_not_announced_is_refused(zklb, shared_zookeeper, kazoo_client, pki, echo,
                                          zk_path, remote):
    """An instance registered by hand at an address the remote host does not announce,
    claiming the remote's trunk: the remote refuses the stream (403, never relayed),
    and the caller counts a failed connect of that instance and closes the client."""
    k = kazoo_client(shared_zookeeper.hosts)
    stray = free_port(REMOTE)
    doc = {"name": "stray", "id": "s1", "address": REMOTE, "port": stray, "sslPort": None,
           "payload": {"zklb.trunk": int(remote.trunk.rsplit(":", 1)[1])},
           "registrationTimeUTC": 0, "serviceType": "DYNAMIC", "uriSpec": None}
    k.create(f"{zk_path}/stray/s1", json.dumps(doc).encode(), makepath=True)
    z = start_caller(zklb, shared_zookeeper, pki, zk_path, services=("stray",))
    s = harness.connect(listen_of(z, "stray"), timeout=5)
    assert harness.closed_within(s, 10) is not None
    s.close()
    z.wait_for_log(r"trunk peer=.*: not_announced", timeout=10)
    assert remote.metrics().value("zklb_trunk_streams_refused_total",
                                  reason="not_announced") == 1
    m = z.metrics()
    assert m.value("zklb_backend_connect_failures_total", service="stray",
                   backend=f"{REMOTE}:{stray}") == 1
    assert m.value("zklb_trunk_peer_stream_failures_total", peer=remote.trunk) == 1


def test_via_auto_and_two_connections_per_peer(zklb, shared_zookeeper, pki, zk_path, remote):
    """via: auto takes the advertised trunk; with connections_per_peer: 2, concurrent
    streams spread over two host-to-host connections and never more."""
    z = start_caller(zklb, shared_zookeeper, pki, zk_path, via="auto", connections_per_peer=2)
    addr = listen_of(z, "echo")
    held = [harness.connect(addr, timeout=10) for _ in range(8)]
    try:
        for i, s in enumerate(held):
            assert harness.echo_roundtrip(s, b"%d\n" % i) == b"%d\n" % i
    finally:
        for s in held:
            s.close()
    for i in range(20):
        assert roundtrip(addr, b"x%d" % i, timeout=10) == b"x%d" % i
    m = z.metrics()
    assert m.value("zklb_trunk_peer_connections_opened_total", peer=remote.trunk) == 2
    assert m.value("zklb_trunk_peer_streams_total", peer=remote.trunk) == 28
    assert remote.metrics().value("zklb_trunk_connections_accepted_total") == 2


def test_remote_drain_lets_streams_finish(zklb, shared_zookeeper, pki, echo, zk_path):
    """SIGTERM on the remote: its trunk sends GOAWAY; the caller's streams in flight
    finish byte-exact, and the caller stops opening streams on that connection."""
    r = start_remote(zklb, shared_zookeeper, pki, echo, zk_path, name="draining")
    z = start_caller(zklb, shared_zookeeper, pki, zk_path)
    addr = listen_of(z, "echo")
    datas = [harness.random_bytes(8 << 20, seed=k) for k in range(2)]
    got = [None, None]
    socks = [harness.connect(addr, timeout=30) for _ in range(2)]

    def one(k):
        s = socks[k]
        try:
            # Half first, then the rest once the drain began (the stream spans it).
            s.sendall(datas[k][:1 << 20])
            started.wait(20)
            s.sendall(datas[k][1 << 20:])
            s.shutdown(socket.SHUT_WR)
            got[k] = harness.recv_all(s, timeout=60)
        except OSError as e:
            got[k] = e
        finally:
            s.close()

    started = threading.Event()
    threads = [threading.Thread(target=one, args=(k,)) for k in range(2)]
    for t in threads:
        t.start()
    harness.wait_until(lambda: echo.status()["open"] == 2, 20, what="2 backend connections")
    r.proc.send_signal(signal.SIGTERM)
    z.wait_for_log(r"GOAWAY received", timeout=10)
    started.set()
    for t in threads:
        t.join(90)
    assert all(isinstance(g, bytes) for g in got), got
    assert got == datas
    assert r.proc.wait(60) == 0


# --------------------------------------------------------------------------- a hostile peer


def frame(ftype, flags, stream, payload=b""):
    """One HTTP/2 frame (RFC 9113 §4.1)."""
    return len(payload).to_bytes(3, "big") + bytes([ftype, flags]) + \
        stream.to_bytes(4, "big") + payload


SETTINGS, HEADERS, DATA = 4, 1, 0
END_STREAM, END_HEADERS = 0x1, 0x4
STATUS_200 = b"\x88"        # HPACK: static table entry 8, ":status: 200"


def read_until_closed(s, timeout):
    """Bytes read until the peer closes (FIN or reset)."""
    return harness.read_to_the_end(s, timeout)[1]


class HostilePeer:
    """A TLS server with ALPN h2 on REMOTE (the remote host's certificate, client
    certificates required) that answers each connection's first stream with
    `reply(stream_id)` bytes, whatever the caller sent."""

    def __init__(self, pki, reply):
        import ssl
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.load_cert_chain(pki.remote["cert"], pki.remote["key"])
        ctx.load_verify_locations(pki.remote["ca"])
        ctx.verify_mode = ssl.CERT_REQUIRED
        ctx.set_alpn_protocols(["h2"])
        self.ctx = ctx
        self.reply = reply
        self.lsock = socket.create_server((REMOTE, 0))
        self.lsock.settimeout(0.2)
        self.port = self.lsock.getsockname()[1]
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self.run, daemon=True)
        self.thread.start()

    def run(self):
        while not self.stop.is_set():
            try:
                raw, _ = self.lsock.accept()
            except OSError:
                continue
            try:
                with self.ctx.wrap_socket(raw, server_side=True) as s:
                    s.settimeout(5)
                    got = b""
                    # The preface (24 bytes), the caller's SETTINGS, then its HEADERS.
                    while len(got) < 24 + 9 and not self.stop.is_set():
                        got += s.recv(65536)
                    time.sleep(0.1)
                    s.sendall(self.reply(1))
                    deadline = time.monotonic() + 5
                    while time.monotonic() < deadline and s.recv(65536):
                        pass
            except OSError:
                pass

    def close(self):
        self.stop.set()
        self.thread.join(10)
        self.lsock.close()


@pytest.mark.parametrize("case", ["garbage", "bad_hpack", "answer", "window_overrun"])
def test_hostile_peer(zklb, shared_zookeeper, kazoo_client, pki, zk_path, case):
    """What a peer sends is hostile too: garbage instead of HTTP/2, a header block
    HPACK cannot decode, and DATA beyond the window the caller advertised close the
    peer's connection (the client gets no bytes and is closed; zklb runs on), while
    a well-formed answer from a foreign HTTP/2 server is relayed as is."""
    settings = frame(SETTINGS, 0, 0)
    replies = {
        "garbage": lambda sid: b"\x17" * 64,
        "bad_hpack": lambda sid: settings + frame(HEADERS, END_HEADERS, sid, b"\xff" * 16),
        "answer": lambda sid: settings + frame(HEADERS, END_HEADERS, sid, STATUS_200) +
        frame(DATA, END_STREAM, sid, b"hello from a foreign peer"),
        # 64 KiB windows (below): 80 frames of 16 KiB overrun both.
        "window_overrun": lambda sid: settings + frame(HEADERS, END_HEADERS, sid, STATUS_200) +
        b"".join(frame(DATA, 0, sid, b"z" * 16384) for _ in range(80)),
    }
    peer = HostilePeer(pki, replies[case])
    try:
        k = kazoo_client(shared_zookeeper.hosts)
        doc = {"name": "odd", "id": "o1", "address": REMOTE, "port": free_port(REMOTE),
               "sslPort": None, "payload": {"zklb.trunk": peer.port},
               "registrationTimeUTC": 0, "serviceType": "DYNAMIC", "uriSpec": None}
        k.create(f"{zk_path}/odd/o1", json.dumps(doc).encode(), makepath=True)
        z = start_caller(zklb, shared_zookeeper, pki, zk_path, services=("odd",),
                         stream_window="64k", connection_window="64k")
        s = harness.connect(listen_of(z, "odd"), timeout=10)
        s.sendall(b"x")
        got = read_until_closed(s, 15)
        s.close()
        if case == "answer":
            assert got == b"hello from a foreign peer"
        elif case == "window_overrun":
            # The answer came, then the peer broke the flow control it agreed to:
            # at most the window reached the client, and the trunk was cut.
            assert len(got) <= 64 * 1024, len(got)
            z.wait_for_log(r"trunk peer=.*GOAWAY FLOW_CONTROL_ERROR", timeout=10)
        else:
            assert got == b"", got      # nothing of a broken exchange reaches the client
            z.wait_for_log(r"trunk peer=.*bad HTTP/2", timeout=10)
            assert z.metrics().value("zklb_backend_connect_failures_total",
                                     service="odd") >= 1
        if case != "answer":
            assert z.metrics().value("zklb_trunk_peer_protocol_errors_total") >= 1
        assert z.running()
        s = harness.connect(listen_of(z, "odd"), timeout=5)     # still serving
        s.close()
    finally:
        peer.close()


class Scripted:
    """A backend on REMOTE, one thread per connection: a connection that sends
    something is handed to script(sock) and what it returns is appended to
    `outcomes`; one that sends nothing (a health check) is just closed."""

    def __init__(self, script):
        self.script = script
        self.outcomes = []
        self.lsock = socket.create_server((REMOTE, 0))
        self.lsock.settimeout(0.2)
        self.port = self.lsock.getsockname()[1]
        self.stopping = threading.Event()
        self.thread = threading.Thread(target=self._accept, daemon=True)
        self.thread.start()

    def _accept(self):
        while not self.stopping.is_set():
            try:
                c, _ = self.lsock.accept()
            except (socket.timeout, TimeoutError):
                continue
            except OSError:
                return
            threading.Thread(target=self._serve, args=(c,), daemon=True).start()

    def _serve(self, c):
        with c:
            c.settimeout(15)
            try:
                if not c.recv(65536):
                    return
                self.outcomes.append(self.script(c))
            except OSError as e:
                self.outcomes.append(repr(e))

    def stop(self):
        self.stopping.set()
        self.thread.join(5)
        self.lsock.close()


def reset_at_once(sock):
    harness.reset(sock)
    return "reset"


def start_scripted_remote(zklb, zk, pki, zk_path, backends):
    """zklb as host REMOTE announcing each Scripted in backends ({service: Scripted})."""
    r = zklb(services={}, zookeeper=zk_section(zk), name="scripted",
             announce=[{"service": svc, "base_path": zk_path, "address": REMOTE,
                        "port": b.port, "check": CHECK} for svc, b in backends.items()],
             trunk={"listen": f"{REMOTE}:{free_port(REMOTE)}", "tls": pki.remote})
    r.wait_for_log(r"trunk: listening on", timeout=10)
    return r


def test_remote_backend_reset_mid_transfer_resets_the_client(zklb, shared_zookeeper, pki,
                                                             zk_path):
    """The remote backend sends 200 kB, then resets: RST_STREAM on the trunk, and the
    calling client's connection ends with a TCP RST (ECONNRESET), not a clean FIN."""
    b = Scripted(lambda sock: harness.send_then_reset(sock, 200_000))
    try:
        r = start_scripted_remote(zklb, shared_zookeeper, pki, zk_path, {"rstmid": b})
        z = start_caller(zklb, shared_zookeeper, pki, zk_path, services=("rstmid",))
        s = harness.connect(listen_of(z, "rstmid"), timeout=10)
        s.sendall(b"go\n")
        end, got = harness.read_to_the_end(s, 15)
        s.close()
        assert (end, len(got) > 0) == ("reset", True), (end, len(got))
        assert z.metrics().value("zklb_trunk_peer_resets_total", direction="in") == 1
        assert r.metrics().value("zklb_trunk_resets_total", direction="out") == 1
        # The first byte came: a success, not a failure of the instance.
        assert not z.metrics().value("zklb_backend_connect_failures_total", service="rstmid")
    finally:
        b.stop()


def test_remote_reset_before_the_first_byte_is_a_failure_of_the_instance(
        zklb, shared_zookeeper, pki, zk_path):
    """`flaky` has a remote backend that resets on the client's first bytes and one
    that echoes. As with a direct TCP backend: the client it reset sees a reset
    (the relay does not replay what the client already sent), the instance is
    counted (zklb_backend_connect_failures_total) and ejected (failures_to_eject
    1), and the following clients are all served by the other instance."""
    bad = Scripted(reset_at_once)
    good = Scripted(lambda sock: sock.sendall(b"ping\n") or "served")
    try:
        start_scripted_remote(zklb, shared_zookeeper, pki, zk_path, {"flaky": bad})
        # The good one under the same service, announced by a second remote process.
        zklb(services={}, zookeeper=zk_section(shared_zookeeper), name="scripted2",
             announce=[{"service": "flaky", "base_path": zk_path, "address": REMOTE,
                        "port": good.port, "check": CHECK}],
             trunk={"listen": f"{REMOTE}:{free_port(REMOTE)}", "tls": pki.remote}
             ).wait_for_log(r"trunk: listening on", timeout=10)
        z = start_caller(zklb, shared_zookeeper, pki, zk_path, services=("flaky",),
                         svc_settings={"balance": "round_robin"})
        harness.wait_until(lambda: len(harness.instances_of(
            harness.services_of(z.services())["flaky"])) == 2, 15, what="two instances")
        addr = listen_of(z, "flaky")
        ends = []
        for _ in range(10):
            s = harness.connect(addr, timeout=10)
            s.sendall(b"ping\n")
            end, got = harness.read_to_the_end(s, 15)
            ends.append((end, len(got)))
            s.close()
        assert ("eof", 0) not in ends, ends          # never a clean end without a byte
        assert ends[-5:] == [("eof", 5)] * 5, ends
        resets = ends.count(("reset", 0))
        assert resets >= 1, ends
        harness.wait_until(lambda: len(bad.outcomes) == resets, 5, what="one accept per reset")
        m = z.metrics()
        assert m.value("zklb_backend_connect_failures_total", service="flaky",
                       backend=f"{REMOTE}:{bad.port}") == resets
        assert not m.value("zklb_backend_connect_failures_total", service="flaky",
                           backend=f"{REMOTE}:{good.port}")
        z.wait_for_log(r"reset before the first byte", timeout=10)
    finally:
        bad.stop()
        good.stop()


def test_client_reset_reaches_the_remote_backend_as_a_reset(zklb, shared_zookeeper, pki,
                                                            zk_path):
    """A client that closes with a TCP RST: the calling side sends RST_STREAM (not
    END_STREAM), and the remote backend's connection is reset (ECONNRESET), not
    ended with a FIN. A client's FIN still arrives as a FIN."""
    b = Scripted(lambda sock: harness.read_to_the_end(sock, 15)[0])
    try:
        r = start_scripted_remote(zklb, shared_zookeeper, pki, zk_path, {"watch": b})
        z = start_caller(zklb, shared_zookeeper, pki, zk_path, services=("watch",))
        addr = listen_of(z, "watch")
        s = harness.connect(addr, timeout=10)
        s.sendall(b"hello")
        s.shutdown(socket.SHUT_WR)
        harness.wait_until(lambda: len(b.outcomes) == 1, 10, what="the FIN at the backend")
        s.close()
        s = harness.connect(addr, timeout=10)
        s.sendall(b"hello")
        harness.wait_until(lambda: z.metrics().value("zklb_trunk_peer_streams_active") == 1
                           and r.metrics().value("zklb_trunk_bytes_total",
                                                 direction="in") == 10,
                           10, what="the bytes at the backend")
        harness.reset(s)
        harness.wait_until(lambda: len(b.outcomes) == 2, 10, what="the end at the backend")
        assert b.outcomes == ["eof", "reset"]
        assert z.metrics().value("zklb_trunk_peer_resets_total", direction="out") == 1
        assert r.metrics().value("zklb_trunk_resets_total", direction="in") == 1
    finally:
        b.stop()


def test_a_real_mariadb_through_the_trunk(zklb, shared_zookeeper, pki, zk_path, tmp_path):
    """An opaque protocol of the real world: Debian's MariaDB on the remote host,
    its own `mariadb` client on the calling host through `via: trunk`. Every
    client connection is a stream of the one trunk; none goes host to host to
    the database's port."""
    from test_routing import MYSQL_PASSWORD, MYSQL_USER, MariaDB
    if not MariaDB.available():
        pytest.fail(f"{MariaDB.binary} is not installed (Debian: mariadb-server)")
    db = MariaDB(tmp_path / "db", name="db")
    db.host, db.port = REMOTE, free_port(REMOTE)
    db.start()
    try:
        # The remote zklb connects from a loopback address of its host's choosing.
        db.sql(f"CREATE USER '{MYSQL_USER}'@'127.0.0.%' IDENTIFIED BY '{MYSQL_PASSWORD}'")
        trunk = f"{REMOTE}:{free_port(REMOTE)}"
        r = zklb(services={}, zookeeper=zk_section(shared_zookeeper), name="remote",
                 announce=[{"service": "db", "base_path": zk_path, "address": REMOTE,
                            "port": db.port, "check": CHECK}],
                 trunk={"listen": trunk, "tls": pki.remote})
        r.wait_for_log(r"trunk: listening on", timeout=10)
        z = start_caller(zklb, shared_zookeeper, pki, zk_path, services=("db",))
        host, port = listen_of(z, "db").rsplit(":", 1)
        n = 10
        for i in range(n):
            out = subprocess.run(
                [MariaDB.client, "--no-defaults", "-h", host, "-P", port, "--protocol=TCP",
                 f"-u{MYSQL_USER}", f"-p{MYSQL_PASSWORD}", "-N", "-B", "-e",
                 f"SELECT @@port, LENGTH(REPEAT('x', {100_000 * (i + 1)})), {i} + 1"],
                capture_output=True, timeout=30)
            assert out.returncode == 0, out.stderr.decode()
            assert out.stdout.decode().split() == [str(db.port), str(100_000 * (i + 1)),
                                                   str(i + 1)]
        c = z.metrics()
        assert c.value("zklb_trunk_peer_streams_total", peer=trunk) == n
        assert c.value("zklb_trunk_peer_connections", peer=trunk) == 1
        assert not host_to_host_sockets(db.port), "a client went host to host to the database"
    finally:
        db.stop(timeout=20)
