"""The trunk listener (trunk:), the accepting side of the zklb-to-zklb trunk.

One zklb plays the host 127.0.0.3: it announces a `zklb-bench serve` echo
backend on 127.0.0.3 and accepts trunk connections (HTTP/2 over mutual TLS)
on 127.0.0.3. trunk_probe plays the calling host: it opens CONNECT
streams to the announced address and checks every byte that comes back.

Covered: byte-exact transfers from 1 B to 64 MiB over concurrent streams, the
caller's half-close (END_STREAM -> backend SHUT_WR -> echo's EOF -> the
stream's END_STREAM), an address not announced refused (403, never relayed),
a backend that refuses (502, for the caller's retry), a client without a
certificate refused, a stream whose caller stops reading beside fast ones,
resets, and the trunk killed mid-transfer (the backends' connections close,
a new trunk works). Every wait is bounded; processes are stopped by PID.
"""

import json
import subprocess

import pytest

import harness
from harness import free_port, zk_section
from test_bench import Server
from test_tls import Pki

pytestmark = pytest.mark.zookeeper

HOST = "127.0.0.3"          # the remote host: zklb, its trunk and its backend


def probe_binary():
    return harness.build_dir() / "tests" / "integration" / "trunk_probe"


class Echo(Server):
    """test_bench's `zklb-bench serve` (status, stop), echoing on HOST."""

    def __init__(self):
        self.proc = subprocess.Popen(
            [harness.bench_binary(), "serve", "--listen", f"{HOST}:0", "--status-port", "0",
             "--mode", "echo"], stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        hello = json.loads(self.proc.stdout.readline())
        self.addr = hello["listen"]
        host, port = hello["status"].rsplit(":", 1)
        self.status_addr = (host, int(port))


@pytest.fixture(scope="module")
def pki(tmp_path_factory):
    return Pki(tmp_path_factory.mktemp("pki"))


@pytest.fixture
def echo():
    e = Echo()
    yield e
    e.stop()


@pytest.fixture
def remote(shared_zookeeper, zklb, pki, echo, zk_path):
    """zklb as host 127.0.0.3: announces the echo backend and a closed port; a trunk listener."""
    closed = free_port(HOST)
    trunk = f"{HOST}:{free_port(HOST)}"
    cert, key = pki.server
    host, port = echo.addr.rsplit(":", 1)
    check = {"type": "tcp", "interval": "100ms", "timeout": "200ms", "rise": 1, "fall": 2}
    z = zklb(services={}, zookeeper=zk_section(shared_zookeeper),
             announce=[{"service": "echo", "base_path": zk_path, "address": host,
                        "port": int(port), "check": check},
                       {"service": "down", "base_path": zk_path, "address": HOST,
                        "port": closed, "check": check}],
             trunk={"listen": trunk, "tls": {"ca": str(pki.ca), "cert": str(cert),
                                             "key": str(key)},
                    "stream_window": "1m", "connection_window": "16m"},
             drain_timeout="30s")     # the drain test's streams finish even on a loaded host
    z.wait_for_log(r"trunk: listening on", timeout=10)
    z.trunk = trunk
    z.echo_addr = echo.addr
    z.closed_addr = f"{HOST}:{closed}"
    return z


def probe(z, pki, authority, *args, cert=True, timeout=120, check=True):
    ccert, ckey = pki.client
    argv = [probe_binary(), "--trunk", z.trunk, "--ca", str(pki.ca),
            "--authority", authority, "--timeout", str(timeout), *map(str, args)]
    if cert:
        argv += ["--cert", str(ccert), "--key", str(ckey)]
    r = subprocess.run(argv, capture_output=True, text=True, timeout=timeout + 30)
    if check:
        assert r.returncode == 0, r.stderr + r.stdout
    return json.loads(r.stdout.strip().splitlines()[-1])


def test_streams_byte_exact_from_1_byte_to_64_mib(remote, pki, echo):
    for n, size in ((1, 1), (64, 1), (64, 100_000), (16, 1 << 20), (1, 64 << 20)):
        r = probe(remote, pki, remote.echo_addr, "--streams", n, "--bytes", size)
        assert r["ok"] == n and r["mismatch"] == 0, (n, size, r)
        assert r["bytes_back"] == n * size
        print(f"\ntrunk: {n} x {size} B through one trunk in {r['ms']} ms")
    # Every backend connection was closed by the echo after our half-close: none lingers.
    harness.wait_until(lambda: echo.status()["open"] == 0, 10, what="backend connections closed")
    total = 64 + 64 * 100_000 + 16 * (1 << 20) + (64 << 20) + 1
    m = harness.wait_until(
        lambda: (x := remote.metrics()).value("zklb_trunk_streams_active") == 0 and x, 10,
        what="streams closed")
    assert m.value("zklb_trunk_bytes_total", direction="in") == total
    assert m.value("zklb_trunk_bytes_total", direction="out") == total
    assert m.value("zklb_trunk_streams_total") == 1 + 64 + 64 + 16 + 1
    assert m.value("zklb_trunk_connections_accepted_total") == 5


def test_empty_stream_half_closes_both_ways(remote, pki):
    # No data, END_STREAM at once: the backend sees EOF, closes, the stream ends cleanly.
    r = probe(remote, pki, remote.echo_addr, "--streams", 8, "--bytes", 0)
    assert r["ok"] == 8 and r["status"]["200"] == 8, r


def test_address_not_announced_is_refused(remote, pki):
    other = f"{HOST}:{free_port(HOST)}"
    r = probe(remote, pki, other, "--streams", 4, "--bytes", 10)
    assert r["status"]["403"] == 4 and r["ok"] == 0, r
    # A name, or the right port on another host, is not an announced address either.
    r = probe(remote, pki, "localhost:" + remote.echo_addr.rsplit(":", 1)[1], "--bytes", 10)
    assert r["ok"] == 0 and r["status"]["other"] == 1, r
    r = probe(remote, pki, "127.0.0.1:" + remote.echo_addr.rsplit(":", 1)[1], "--bytes", 10)
    assert r["status"]["403"] == 1, r
    remote.wait_for_log(r"refused: not_announced")
    m = remote.metrics()
    assert m.value("zklb_trunk_streams_refused_total", reason="not_announced") == 5
    assert m.value("zklb_trunk_streams_refused_total", reason="bad_request") == 1
    assert m.value("zklb_trunk_connect_failures_total") == 0


def test_backend_refusing_answers_502(remote, pki):
    r = probe(remote, pki, remote.closed_addr, "--streams", 3, "--bytes", 10)
    assert r["status"]["502"] == 3 and r["ok"] == 0, r
    assert remote.metrics().value("zklb_trunk_connect_failures_total") == 3
    # The trunk itself is unaffected.
    r = probe(remote, pki, remote.echo_addr, "--streams", 3, "--bytes", 10)
    assert r["ok"] == 3, r


def test_client_without_certificate_is_refused(remote, pki):
    r = probe(remote, pki, remote.echo_addr, "--bytes", 10, cert=False, timeout=10)
    assert r.get("ok", 0) == 0, r
    remote.wait_for_log(r"TLS handshake failed", timeout=5)
    assert remote.metrics().value("zklb_trunk_handshake_failures_total") == 1


def test_slow_stream_does_not_stall_the_others(remote, pki):
    # Stream 1 never reads its echo: its windows fill, the backend's sends stop.
    # The 15 others, 8 MiB each through the same trunk, must all finish.
    base = probe(remote, pki, remote.echo_addr, "--streams", 15, "--bytes", 8 << 20)
    assert base["ok"] == 15, base
    r = probe(remote, pki, remote.echo_addr, "--stall-first", "--streams", 16,
              "--bytes", 8 << 20, timeout=120)
    assert r["ok"] == 15 and r["mismatch"] == 0 and r["fast_done_ms"] > 0, r
    print(f"\ntrunk: 15 x 8 MiB in {base['ms']} ms alone, "
          f"{r['fast_done_ms']} ms beside a stalled stream")
    assert remote.metrics().value("zklb_trunk_window_stalls_total") >= 1


def test_reset_by_the_caller_resets_the_backend(remote, pki, echo):
    r = probe(remote, pki, remote.echo_addr, "--streams", 8, "--bytes", 4 << 20,
              "--reset-after", 100_000)
    assert r["reset"] == 8, r
    assert remote.metrics().value("zklb_trunk_resets_total", direction="in") == 8
    harness.wait_until(lambda: echo.status()["open"] == 0, 10, what="backend connections closed")
    r = probe(remote, pki, remote.echo_addr, "--streams", 4, "--bytes", 1000)
    assert r["ok"] == 4, r


def test_trunk_killed_mid_transfer(remote, pki, echo):
    ccert, ckey = pki.client
    p = subprocess.Popen([probe_binary(), "--trunk", remote.trunk, "--ca", str(pki.ca),
                          "--cert", str(ccert), "--key", str(ckey), "--authority",
                          remote.echo_addr, "--streams", "8", "--bytes", str(64 << 20)],
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        harness.wait_until(lambda: echo.status()["open"] == 8, 20, what="8 backend connections")
        p.kill()
    finally:
        p.wait(10)
        p.stdout.close()
        p.stderr.close()
    remote.wait_for_log(r"trunk peer=.*closed: .*\(8 streams\)", timeout=10)
    harness.wait_until(lambda: echo.status()["open"] == 0, 10, what="backend connections closed")
    r = probe(remote, pki, remote.echo_addr, "--streams", 4, "--bytes", 1000)
    assert r["ok"] == 4, r
    assert remote.running()


def test_announce_advertises_the_trunk_port(remote, kazoo_client, shared_zookeeper, zk_path):
    """The Curator payload carries "zklb.trunk": the trunk's port, in the Map form
    every Curator consumer of a Map payload reads (unknown keys are just keys)."""
    k = kazoo_client(shared_zookeeper.hosts)
    path = zk_path + "/echo"
    kids = harness.wait_until(lambda: k.get_children(path) if k.exists(path) else None, 10,
                              what="the echo entry registered")
    doc = json.loads(k.get(f"{path}/{kids[0]}")[0])
    assert doc["payload"] == {"@class": "java.util.LinkedHashMap",
                              "zklb.trunk": int(remote.trunk.rsplit(":", 1)[1])}


def test_ten_thousand_streams_over_one_connection(remote, pki):
    """10,000 short streams (64 B each way) ride one host-to-host TCP connection;
    only the remote's local backend connections grow with them."""
    r = probe(remote, pki, remote.echo_addr, "--streams", 10_000, "--bytes", 64, timeout=120)
    assert r["ok"] == 10_000, r
    m = remote.metrics()
    assert m.value("zklb_trunk_connections_accepted_total") == 1
    assert m.value("zklb_trunk_streams_total") == 10_000
    # Counted by ss: the trunk port shows one connection (its two loopback ends,
    # established or in TIME_WAIT), whatever the number of streams.
    port = remote.trunk.rsplit(":", 1)[1]
    ss = subprocess.run(["ss", "-Htan", f"( sport = :{port} or dport = :{port} )"],
                        capture_output=True, text=True, timeout=10).stdout.splitlines()
    sockets = [line for line in ss if not line.startswith("LISTEN")]
    assert len(sockets) <= 2, ss
    print(f"\ntrunk: 10,000 streams of 64 B over 1 TCP connection in {r['ms']} ms; "
          f"ss on the trunk port: {len(sockets)} sockets")


def test_drain_lets_open_streams_finish(remote, pki, echo):
    """SIGTERM: the trunk sends GOAWAY and accepts nothing new, while the streams
    already open finish byte-exact; then zklb exits."""
    ccert, ckey = pki.client
    p = subprocess.Popen([probe_binary(), "--trunk", remote.trunk, "--ca", str(pki.ca),
                          "--cert", str(ccert), "--key", str(ckey), "--authority",
                          remote.echo_addr, "--streams", "4", "--bytes", str(32 << 20)],
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        harness.wait_until(lambda: echo.status()["open"] == 4, 20, what="4 backend connections")
        assert remote.stop(timeout=45) == 0
        out, err = p.communicate(timeout=60)
    finally:
        if p.poll() is None:
            p.kill()
            p.wait(10)
    r = json.loads(out.strip().splitlines()[-1])
    assert r["ok"] == 4 and r["mismatch"] == 0, (r, err)
    assert "draining: GOAWAY sent" in remote.log()
