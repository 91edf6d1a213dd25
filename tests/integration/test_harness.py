"""Self-tests of the harness: backends, blackhole, parsers, ZooKeeper fixtures.

They need no zklb binary, so they also show the harness works on a fresh machine.
"""

import socket
import threading
import time

import pytest

import harness
from harness import (ask_tag, closed_within, connect, connect_refused, parse_metrics,
                     random_bytes, recv_all, sha256, to_yaml)


def test_echo_backend_relays_exact_bytes(backend):
    b = backend("b1", "echo")
    data = random_bytes(3 << 20, seed=1)
    s = connect(b.addr)
    t = threading.Thread(target=lambda: (s.sendall(data), s.shutdown(socket.SHUT_WR)))
    t.start()
    got = recv_all(s, timeout=20)
    t.join(20)
    s.close()
    assert sha256(got) == sha256(data)
    assert b.accepts == 1


def test_tag_greet_digest_modes(backend):
    b1 = backend("b1", "tag")
    assert ask_tag(b1.addr) == "b1"
    g = backend("g1", "greet")
    s = connect(g.addr)
    assert s.recv(100) == b"g1\n"
    s.close()
    d = backend("d", "digest")
    s = connect(d.addr)
    s.sendall(b"hello")
    s.shutdown(socket.SHUT_WR)
    assert recv_all(s).decode() == f"5 {sha256(b'hello')}\n"
    s.close()


def test_hold_counts_active_and_stop_closes(backend):
    b = backend("h", "hold")
    socks = [connect(b.addr) for _ in range(5)]
    b.wait_active(5)
    assert b.accepts == 5
    socks[0].close()
    b.wait_active(4)
    b.stop()
    assert closed_within(socks[1], 2) is not None
    for s in socks:
        s.close()
    assert connect_refused(b.addr)


def test_rst_and_close_modes(backend):
    r = backend("r", "rst")

    def reset_seen():
        try:
            s = connect(r.addr)
        except ConnectionResetError:    # the RST can beat connect() back to us
            return True
        try:
            s.sendall(b"x")
            time.sleep(0.1)
            s.sendall(b"x" * 100000)
            return s.recv(10) is None
        except (ConnectionResetError, BrokenPipeError):
            return True
        finally:
            s.close()

    for _ in range(5):
        assert reset_seen()
    c = backend("c", "close")
    s = connect(c.addr)
    assert recv_all(s, timeout=2) == b""
    s.close()


def test_many_connections(backend):
    b = backend("m", "tag")
    socks = []
    try:
        for _ in range(500):
            tag, s = ask_tag(b.addr, keep=True)
            assert tag == "m"
            socks.append(s)
        b.wait_active(500)
    finally:
        for s in socks:
            s.close()
    b.wait_active(0)


def test_closed_port_refuses(closed_port):
    c = closed_port()
    t0 = time.monotonic()
    assert connect_refused(c.address)
    assert time.monotonic() - t0 < 0.5


def test_blackhole_connect_hangs(blackhole):
    b = blackhole()
    t0 = time.monotonic()
    with pytest.raises((socket.timeout, TimeoutError)):
        socket.create_connection(harness.split_addr(b.address), timeout=0.5)
    assert time.monotonic() - t0 >= 0.45


def test_free_port_is_free_and_unique():
    ports = {harness.free_port() for _ in range(50)}
    assert len(ports) == 50
    for p in list(ports)[:5]:
        assert connect_refused(("127.0.0.1", p))


def test_metrics_parser():
    m = parse_metrics(
        '# HELP zklb_backend_connections_total Connections.\n'
        '# TYPE zklb_backend_connections_total counter\n'
        'zklb_backend_connections_total{backend="127.0.0.1:1",service="web"} 3\n'
        'zklb_backend_connections_total{service="web",backend="127.0.0.1:2"} 4 1700000000\n'
        'zklb_up 1\n'
        'zklb_x{a="q\\"uote"} +Inf\n')
    assert m['zklb_backend_connections_total{backend="127.0.0.1:2",service="web"}'] == 4
    assert m.value("zklb_backend_connections_total", service="web") == 7
    assert m.value("zklb_backend_connections_total", backend="127.0.0.1:1") == 3
    assert m.value("zklb_up") == 1
    assert m.value("zklb_missing") is None
    assert m.value("zklb_x", a='q"uote') == float("inf")


def test_yaml_emitter():
    text = to_yaml({"a": {"b": [1, "x y", {"c": True, "d": [], "e": None}]},
                    "f": "5s", "g": {}})
    assert text == ('a:\n'
                    '  b:\n'
                    '    - 1\n'
                    '    - "x y"\n'
                    '    - c: true\n'
                    '      d: []\n'
                    '      e: null\n'
                    'f: "5s"\n'
                    'g: {}\n')
    yaml = pytest.importorskip("yaml")
    cfg = {"services": {"web": harness.static_service(["127.0.0.1:1", ("127.0.0.1:2", 3)],
                                                      retries=2)}}
    assert yaml.safe_load(to_yaml(cfg)) == cfg
    assert cfg["services"]["web"]["discovery"]["backends"][1] == "127.0.0.1:2 weight=3"


@pytest.mark.zookeeper
def test_zookeeper_standalone(zookeeper, zk_client):
    assert zookeeper.mode() == "standalone"
    zk_client.create("/harness/x", b"1", makepath=True)
    assert zk_client.get("/harness/x")[0] == b"1"
    zookeeper.restart()
    assert zookeeper.mode() == "standalone"
    zk_client.retry(zk_client.get, "/harness/x")


@pytest.mark.zookeeper
@pytest.mark.slow
def test_ensemble_leader_kill(ensemble, kazoo_client):
    c = kazoo_client(ensemble.hosts)
    c.create("/e", b"v")
    old = ensemble.kill_leader()
    ensemble.wait_ready(60)
    new = ensemble.leader()
    assert new is not None and new is not old
    assert c.retry(c.get, "/e")[0] == b"v"
    old.start(wait=False)
    ensemble.wait_ready(60)
