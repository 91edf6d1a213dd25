"""The admin API: its endpoints after real traffic (/healthz, the HTML page,
404 for anything else, per-backend counters in /metrics and the same figures in
/services' instances), its unix-socket listener, and /metrics against the one
table of metric families (src/metrics.c: /metrics is written from it, the README
lists it).

The table is read through the metrics_table tool (tests/metrics_table.c),
which prints the rows /metrics is written from.
"""

import http.client
import json
import os
import re
import socket
import stat
import subprocess
import time

import pytest

import harness
from harness import (METRIC, ROOT, ask_tag, backend_labels, build_dir, connect, echo_roundtrip,
                     free_addr, instance_address, instances_of, parse_metrics, random_bytes,
                     run_zklb, static_service, stream, wait_until, UnixHTTPConnection)

SVC = "web"


def test_admin_endpoints(backend, closed_port, zklb):
    good = backend("good", "echo")
    dead = closed_port()
    lb = zklb(services={SVC: static_service([good, dead], balance="round_robin",
                                            retries=2)})
    addr = lb.listen(SVC)
    payload = random_bytes(1000, seed=11)
    for _ in range(10):
        assert stream(addr, payload) == payload

    status, headers, body = lb.admin_get("/healthz")
    assert status == 200 and body.strip() == b"ok"

    status, headers, body = lb.admin_get("/")
    assert status == 200 and "text/html" in headers.get("content-type", "")
    assert SVC.encode() in body

    assert lb.admin_get("/no-such-page")[0] == 404

    def settled():
        m = lb.metrics()
        return m.value(METRIC["active"], **backend_labels(SVC, good)) == 0 and m
    m = wait_until(settled, 5, what=f"{METRIC['active']} of {good.address} to reach 0")
    lab = backend_labels(SVC, good)
    assert m.value(METRIC["total"], **lab) == 10, m.names()
    assert m.value(METRIC["bytes_in"], **lab) == 10 * len(payload)
    assert m.value(METRIC["bytes_out"], **lab) == 10 * len(payload)
    assert m.value(METRIC["connect_failures"], **backend_labels(SVC, dead)) >= 1

    held = [connect(addr) for _ in range(3)]
    for s in held:
        assert echo_roundtrip(s) == b"ping\n"
    assert lb.metrics().value(METRIC["active"], **lab) == 3

    svc = lb.services()[SVC]
    assert svc["listen"] == lb.config["services"][SVC]["listen"]
    insts = {instance_address(i): i for i in instances_of(svc)}
    assert set(insts) == {good.address, dead.address}
    for i in insts.values():
        assert {"id", "address", "port", "state", "active", "total", "failures"} <= set(i)
        assert i["state"] in harness.INSTANCE_STATES
    assert insts[good.address]["total"] == 13
    assert insts[good.address]["active"] == 3
    assert insts[good.address]["state"] == "healthy"
    assert insts[dead.address]["failures"] >= 1
    for s in held:
        s.close()


def unix_get(path, url, timeout=5.0):
    """GET url over the unix socket at path → (status, headers, body bytes)."""
    c = UnixHTTPConnection(str(path), timeout)
    try:
        c.request("GET", url)
        r = c.getresponse()
        return r.status, {k.lower(): v for k, v in r.getheaders()}, r.read()
    finally:
        c.close()


def wait_unix_ready(lb, path, timeout=15.0):
    """What the harness's wait_ready does on a TCP admin address, on a socket:
    GET /healthz until 200; fail at once if zklb exits."""
    deadline = time.monotonic() + timeout
    while True:
        if not lb.running():
            raise AssertionError(f"zklb exited with {lb.proc.wait()} during start-up\n"
                                 f"--- {lb.log_path} ---\n{lb.log_tail()}")
        try:
            if unix_get(path, "/healthz", timeout=1.0)[0] == 200:
                return
        except OSError:
            pass
        if time.monotonic() > deadline:
            raise AssertionError(f"no GET /healthz on {path} after {timeout}s\n{lb.log_tail()}")
        time.sleep(0.05)


def stale_socket(path):
    """A socket file nobody accepts on, as a crashed process leaves it."""
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.bind(str(path))
    s.close()
    assert stat.S_ISSOCK(os.stat(path).st_mode)


# --------------------------------------------------------------------------- unix listener


def test_admin_on_unix_socket(backend, zklb, tmp_path):
    b = backend("b1", "tag")
    path = tmp_path / "admin.sock"
    lb = zklb(services={SVC: static_service([b])}, admin=f"unix:{path}", start=False)
    check = run_zklb(["check", "-c", str(lb.config_path)])
    assert check.returncode == 0, check.stderr
    lb.start(wait=False)
    wait_unix_ready(lb, path)

    assert stat.S_ISSOCK(os.stat(path).st_mode)
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o660
    lb.wait_for_log(rf"admin API on unix:{path}$")

    assert ask_tag(lb.listen(SVC)) == "b1"
    status, headers, body = unix_get(path, "/metrics")
    assert status == 200 and headers["content-type"].startswith("text/plain")
    m = parse_metrics(body.decode())
    assert m.value("zklb_backend_connections_total", service=SVC) == 1
    status, _, body = unix_get(path, "/services")
    assert status == 200 and SVC.encode() in body
    assert unix_get(path, "/")[0] == 200

    assert lb.stop() == 0
    assert not path.exists(), "the admin socket outlives zklb"


def test_admin_unix_replaces_a_stale_socket(backend, zklb, tmp_path):
    path = tmp_path / "admin.sock"
    stale_socket(path)
    lb = zklb(services={SVC: static_service([backend("b1", "tag")])}, admin=f"unix:{path}",
              start=False)
    lb.start(wait=False)
    wait_unix_ready(lb, path)
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o660


def test_admin_unix_never_removes_a_regular_file(backend, zklb, tmp_path):
    path = tmp_path / "admin.sock"
    path.write_text("not a socket\n")
    lb = zklb(services={SVC: static_service([backend("b1", "tag")])}, admin=f"unix:{path}",
              start=False)
    lb.start(wait=False)
    assert lb.wait(15) == 1
    assert path.read_text() == "not a socket\n"
    assert f"admin: cannot listen on unix:{path}" in lb.log()


def test_admin_unix_leaves_a_live_socket_alone(backend, zklb, tmp_path):
    path = tmp_path / "admin.sock"
    first = zklb(services={SVC: static_service([backend("b1", "tag")])},
                 admin=f"unix:{path}", start=False)
    first.start(wait=False)
    wait_unix_ready(first, path)
    second = zklb(services={SVC: static_service([backend("b2", "tag")])},
                  admin=f"unix:{path}", start=False, name="second")
    second.start(wait=False)
    assert second.wait(15) == 1
    assert "admin: cannot listen on" in second.log()
    # The first one still answers on its socket, which is still there.
    assert unix_get(path, "/healthz")[0] == 200


# --------------------------------------------------------------------------- the metrics table

README_BEGIN = "<!-- metrics table:"
README_END = "<!-- end of metrics table -->"


def metrics_table(*args):
    tool = build_dir() / "tests" / "metrics_table"
    assert tool.exists(), f"{tool} not built (meson -Dtests=auto or enabled builds it)"
    return subprocess.run([str(tool)] + list(args), capture_output=True, text=True, check=True,
                          timeout=10).stdout


def table_rows():
    """[(name, type, [labels], help)] in /metrics order."""
    rows = []
    for line in metrics_table().splitlines():
        name, type_, labels, help_ = line.split("\t")
        rows.append((name, type_, labels.split(",") if labels else [], help_))
    return rows


def readme_block():
    text = (ROOT / "README.md").read_text()
    start = text.index(README_BEGIN)
    start = text.index("-->\n", start) + len("-->\n")
    return text[start:text.index(README_END, start)]


def test_metrics_table_is_sound():
    rows = table_rows()
    names = [r[0] for r in rows]
    assert len(names) == len(set(names)), "a family is declared twice"
    for name, type_, labels, help_ in rows:
        assert re.fullmatch(r"zklb_[a-z0-9_]+", name), name
        assert type_ in ("counter", "gauge"), (name, type_)
        # Prometheus naming: counters end in _total, nothing else does.
        assert name.endswith("_total") == (type_ == "counter"), name
        assert help_ and "\n" not in help_ and "\\" not in help_, name
        assert len(labels) == len(set(labels)), name


def test_readme_lists_the_metrics_table():
    block = readme_block()
    listed = re.findall(r"^\| `(zklb_[a-z0-9_]+)", block, re.M)
    declared = [r[0] for r in table_rows()]
    assert not set(listed) - set(declared), \
        f"README lists families the table lacks: {sorted(set(listed) - set(declared))}"
    assert not set(declared) - set(listed), \
        f"README misses families of the table: {sorted(set(declared) - set(listed))}"
    assert block == metrics_table("--markdown"), \
        "README's metric list differs from the table: paste `metrics_table --markdown` in"


def families(text):
    """{name: (help, type)} of the # HELP / # TYPE lines, and their order."""
    helps, types, order = {}, {}, []
    for line in text.splitlines():
        m = re.match(r"# (HELP|TYPE) (\S+) (.*)$", line)
        if not m:
            continue
        (helps if m.group(1) == "HELP" else types)[m.group(2)] = m.group(3)
        if m.group(1) == "HELP":
            order.append(m.group(2))
    return {n: (helps.get(n), types.get(n)) for n in order}, order


@pytest.mark.zookeeper
def trunk_section(tmp_path):
    """A trunk: section with test certificates (test_tls's Pki)."""
    from test_tls import Pki
    pki = Pki(tmp_path / "pki")
    cert, key = pki.server
    return {"listen": free_addr(), "tls": {"ca": str(pki.ca), "cert": str(cert), "key": str(key)}}


def test_metrics_families_are_the_table(shared_zookeeper, zk_path, kazoo_client, backend,
                                        zklb, tmp_path):
    """With every optional part configured (ZooKeeper discovery, overlay,
    announce, sync, render, trunk), /metrics writes exactly the table's families, in its
    order, with its HELP, TYPE and labels."""
    k = kazoo_client(shared_zookeeper.hosts)
    b1 = backend("b1", "tag")
    b2 = backend("b2", "tag")
    disc = zk_path + "/services/web"
    k.create(disc + "/i1", json.dumps({
        "name": "web", "id": "i1", "address": "127.0.0.1", "port": b1.port, "sslPort": None,
        "payload": None, "registrationTimeUTC": 1, "serviceType": "DYNAMIC",
        "uriSpec": None}).encode(), makepath=True)
    # An instance advertising a trunk on a closed port: one client through it makes
    # the calling side meet a peer (its families are written from then on).
    trunked = zk_path + "/services/trunked"
    k.create(trunked + "/t1", json.dumps({
        "name": "trunked", "id": "t1", "address": "127.0.0.1", "port": b1.port,
        "sslPort": None, "payload": {"zklb.trunk": harness.free_port()},
        "registrationTimeUTC": 1, "serviceType": "DYNAMIC", "uriSpec": None}).encode(),
        makepath=True)
    k.create(zk_path + "/config/app", b"x=1\n", makepath=True)
    overlay = {"api": {"listen": free_addr(), "discovery": {"type": "static",
                                                            "backends": [b2.address]}}}
    k.create(zk_path + "/zklb", json.dumps(overlay).encode(), makepath=True)
    lb = zklb(services={SVC: {"listen": free_addr(),
                              "discovery": {"type": "curator", "path": disc}},
                        "trunked": {"listen": free_addr(), "via": "trunk",
                                    "discovery": {"type": "curator", "path": trunked}},
                        "static": static_service([b2])},
              zookeeper={"hosts": shared_zookeeper.hosts, "session_timeout": "2s",
                         "config_path": zk_path + "/zklb"},
              announce=[{"service": "ann", "base_path": zk_path + "/announced",
                         "address": "127.0.0.1", "port": b1.port,
                         "check": {"type": "tcp", "interval": "100ms"}}],
              sync=[{"path": zk_path + "/config/app", "file": str(tmp_path / "app")}],
              render=[{"service": "static", "file": str(tmp_path / "static.lines"),
                       "format": "lines", "wait": {"min": "50ms", "max": "1s"}}],
              overlay={"denied_networks": ["reserved"]},    # its backend is on loopback
              trunk=trunk_section(tmp_path))

    def settled():
        m = lb.metrics()
        return (m.value("zklb_announce_registrations_total") == 1
                and m.value("zklb_sync_writes_total") == 1
                and m.value("zklb_config_overlay_in_force") == 1
                and m.value("zklb_discovery_connected", service=SVC) == 1
                and m.value("zklb_render_writes_total") == 1)
    wait_until(settled, 15, what="announce, sync, render, overlay and discovery to settle")
    assert ask_tag(lb.listen(SVC)) == "b1"
    wait_until(lambda: lb.metrics().value("zklb_discovery_connected", service="trunked") == 1,
               15, what="the trunked service discovered")
    with harness.connect(lb.listen("trunked")) as s:
        assert harness.closed_within(s, 10) is not None     # the trunk port refuses

    text = lb.admin_get("/metrics")[2].decode()
    written, order = families(text)
    rows = table_rows()
    declared = {name: (help_, type_) for name, type_, _, help_ in rows}
    assert not set(written) - set(declared), \
        f"/metrics writes families the table lacks: {sorted(set(written) - set(declared))}"
    assert not set(declared) - set(written), \
        f"families of the table missing from /metrics: {sorted(set(declared) - set(written))}"
    assert order == [r[0] for r in rows]
    for name, (help_, type_) in written.items():
        assert (help_, type_) == declared[name], name
    labels = {name: set(ls) for name, _, ls, _ in rows}
    m = parse_metrics(text)
    for name, ls, _ in m.parsed:
        assert set(ls) == labels[name], (name, ls)
    # One series per object of the scope.
    assert {ls["service"] for n, ls, _ in m.parsed if n == "zklb_service_panic"} == \
        {SVC, "static", "api", "trunked"}
    assert m.value("zklb_discovery_bad_instances_total", service=SVC) == 0
    assert m.value("zklb_discovery_bad_instances_total", service="static") is None


# --------------------------------------------------------------------------- hardening (issue 12)


def admin_request(addr, path, token=None, timeout=5.0):
    """One GET on a fresh connection → (status, headers, body)."""
    host, port = harness.split_addr(addr)
    c = http.client.HTTPConnection(host, port, timeout=timeout)
    try:
        c.request("GET", path, headers={"Authorization": f"Bearer {token}"} if token else {})
        r = c.getresponse()
        return r.status, {k.lower(): v for k, v in r.getheaders()}, r.read()
    finally:
        c.close()


def token_file(tmp_path, token, mode=0o600):
    p = tmp_path / "admin.token"
    p.write_text(token + "\n")
    os.chmod(p, mode)
    return p


def test_admin_token_required(backend, zklb, tmp_path):
    b = backend("b1", "tag")
    secret = "t0k3n-" + os.urandom(8).hex()
    admin = free_addr()
    cfg = harness.zklb_config({SVC: static_service([b])}, admin=admin)
    cfg["admin"]["token_file"] = str(token_file(tmp_path, secret))
    lb = zklb(cfg)
    lb.wait_for_log(r"admin API on http://\S+ \(bearer token required\)")
    for path in ("/services", "/metrics", "/", "/no-such-page"):
        status, headers, _ = admin_request(admin, path)
        assert status == 401, path
        assert headers["www-authenticate"].startswith("Bearer"), headers
        for wrong in (secret[:-1], secret + "x", secret.upper(), "x" * len(secret)):
            assert admin_request(admin, path, token=wrong)[0] == 401, (path, wrong)
    # /healthz stays open for load balancers' probes.
    assert admin_request(admin, "/healthz")[0] == 200
    status, _, body = admin_request(admin, "/services", token=secret)
    assert status == 200 and SVC in json.loads(body)["services"]
    assert admin_request(admin, "/metrics", token=secret)[0] == 200
    assert admin_request(admin, "/no-such-page", token=secret)[0] == 404
    status, _, body = admin_request(admin, "/metrics", token=secret)
    m = parse_metrics(body.decode())
    assert m.value("zklb_admin_connections_closed_total", reason="unauthorized") == 4 * 5


def test_admin_token_file_mode_refused(backend, zklb, tmp_path):
    b = backend("b1", "tag")
    cfg = harness.zklb_config({SVC: static_service([b])})
    p = token_file(tmp_path, "secret", mode=0o640)
    cfg["admin"]["token_file"] = str(p)
    lb = zklb(cfg, start=False)
    r = run_zklb(["check", "-c", str(lb.config_path)])
    assert r.returncode == 1
    assert "admin.token_file" in r.stderr and "accessible by group or others" in r.stderr, r.stderr
    lb.start(wait=False)
    assert lb.wait(10) == 1
    os.chmod(p, 0o600)
    r = run_zklb(["check", "-c", str(lb.config_path)])
    assert r.returncode == 0, r.stderr


def test_admin_slowloris_closed(backend, zklb):
    b = backend("b1", "tag")
    admin = free_addr()
    cfg = harness.zklb_config({SVC: static_service([b])}, admin=admin)
    cfg["admin"]["request_timeout"] = "1s"
    lb = zklb(cfg)
    slow = connect(admin)
    slow.sendall(b"GET /services HTTP/1.1\r\n")
    t0 = time.monotonic()
    closed_at = None
    # One header byte every 100 ms: each read is recent, the head never completes.
    while time.monotonic() - t0 < 5:
        try:
            slow.sendall(b"X")
        except OSError:
            closed_at = time.monotonic() - t0
            break
        # Meanwhile another client is served at once.
        status, _, body = admin_request(admin, "/healthz", timeout=2)
        assert status == 200 and body.strip() == b"ok"
        slow.settimeout(0.1)
        try:
            if slow.recv(4096) == b"":
                closed_at = time.monotonic() - t0
                break
        except (socket.timeout, TimeoutError):
            pass
        except ConnectionResetError:
            closed_at = time.monotonic() - t0
            break
    slow.close()
    assert closed_at is not None, "a client dribbling its head was never closed"
    assert closed_at >= 0.9, f"closed after {closed_at:.2f}s, before the 1s deadline"
    m = lb.metrics()
    assert m.value("zklb_admin_connections_closed_total", reason="timeout") == 1
    lb.wait_for_log(r"admin: request head not complete within 1000ms")


def test_admin_connection_cap(backend, zklb):
    b = backend("b1", "tag")
    admin = free_addr()
    cfg = harness.zklb_config({SVC: static_service([b])}, admin=admin)
    cfg["admin"].update({"max_connections": 3, "request_timeout": "30s"})
    lb = zklb(cfg)
    idle = [connect(admin) for _ in range(3)]
    wait_until(lambda: lb.log().count("accepting paused") == 1, 5, what="accept paused")
    # The next client waits in the backlog: connected, unanswered.
    waiting = connect(admin)
    waiting.sendall(b"GET /healthz HTTP/1.1\r\nHost: a\r\n\r\n")
    waiting.settimeout(0.5)
    with pytest.raises((socket.timeout, TimeoutError)):
        waiting.recv(4096)
    idle.pop().close()
    waiting.settimeout(5)
    assert waiting.recv(4096).startswith(b"HTTP/1.1 200 OK")
    waiting.close()
    for s in idle:
        s.close()
    wait_until(lambda: lb.metrics().value("zklb_admin_connections_open") == 1, 5,
               what="admin connections back to the scraper's own")
    assert lb.metrics().value("zklb_admin_accept_paused_total") >= 1


def test_admin_metrics_cached(backend, zklb):
    b = backend("b1", "tag")
    admin = free_addr()
    cfg = harness.zklb_config({SVC: static_service([b])}, admin=admin)
    cfg["admin"]["metrics_cache"] = "5s"
    lb = zklb(cfg)

    def total():
        return lb.metrics().value("zklb_service_connections_total", service=SVC)

    before = total()
    assert ask_tag(lb.listen(SVC)) == "b1"
    # Within the interval the same body is served: the new connection is not in it.
    assert total() == before
    wait_until(lambda: total() == before + 1, 10, what="the cached /metrics to be rebuilt")
