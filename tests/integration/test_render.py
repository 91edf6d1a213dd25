"""render: — a service's live instances written into a file for software that
holds the member list itself (docs/design.md, README "Nginx and HAProxy
upstreams"), against real peers: Debian's nginx reading an upstream block and
HAProxy reading server lines, both reloaded by on_change, with Curator
registrations in a real ZooKeeper.

What is checked: the consumer really routes to the rendered set (a removed
instance stops getting requests, a new one starts); a storm of registrations
costs at most two reloads (wait.min/max); an empty set never replaces the file
(min_instances); a failing check_command keeps the old file and the consumer
keeps serving; ZooKeeper down changes nothing; hostile values never reach a
file; the built-in formats and a custom template byte for byte; `zklb render`
prints the bytes the daemon writes.
"""

import json
import os
import shutil
import signal
import socket
import subprocess
import time

import pytest

import harness
from harness import (LOOPBACK, ServerProcess, TinyHTTP, free_addr, free_port, run_zklb,
                     static_service, wait_until, zk_section)

pytestmark = pytest.mark.zookeeper

SVC = "web"
NGINX = shutil.which("nginx") or "/usr/sbin/nginx"
HAPROXY = shutil.which("haproxy") or "/usr/sbin/haproxy"


def curator(id_, port, host=LOOPBACK, payload=None):
    return json.dumps({"name": SVC, "id": id_, "address": host, "port": port, "sslPort": None,
                       "payload": payload, "registrationTimeUTC": int(time.time() * 1000),
                       "serviceType": "DYNAMIC", "uriSpec": None}).encode()


def register(k, path, id_, port, host=LOOPBACK, payload=None):
    k.create(f"{path}/{id_}", curator(id_, port, host, payload), makepath=True)


def zk_service(path):
    return {"listen": "off", "discovery": {"type": "curator", "path": path}}


def lines(path):
    return path.read_text().splitlines() if path.exists() else []


def render_state(lb, i=0):
    return lb.admin_json("/services")["render"][i]


class NginxFront(ServerProcess):
    """nginx as an HTTP reverse proxy whose upstream block is the rendered file."""

    kind = "nginx-front"
    binary = NGINX

    def __init__(self, workdir, upstream_file):
        super().__init__(workdir)
        d = self.dir
        (d / "tmp").mkdir(exist_ok=True)
        self.pid_file = d / "nginx.pid"
        user = "user root;\n" if os.geteuid() == 0 else ""
        temps = "".join(f"    {k}_temp_path {d}/tmp;\n"
                        for k in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi"))
        self.conf = d / "nginx.conf"
        self.conf.write_text(f"""daemon off;
master_process on;
{user}worker_processes 1;
pid {self.pid_file};
error_log {d}/error.log warn;
events {{ worker_connections 1024; }}
http {{
    access_log off;
{temps}    include {upstream_file};
    server {{
        listen {self.host}:{self.port};
        location / {{ proxy_pass http://{SVC}; proxy_next_upstream off; }}
    }}
}}
""")
        # What check_command runs: nginx -t on a config that includes the candidate.
        self.check_conf = d / "check.conf"
        self.check_script = d / "check.sh"
        # A test makes the check refuse by creating this file.
        self.refuse = d / "refuse"
        self.check_script.write_text(f"""#!/bin/sh
[ -e {self.refuse} ] && {{ echo "refused by the test"; exit 3; }}
printf 'events {{ }}\\nhttp {{ include %s; }}\\n' "$1" > {self.check_conf}
exec {NGINX} -t -q -p {d} -e {d}/check-error.log -c {self.check_conf}
""")
        self.check_script.chmod(0o755)

    def argv(self):
        return [self.binary, "-p", str(self.dir), "-c", str(self.conf),
                "-e", str(self.dir / "error.log")]

    def get(self, path, timeout=5.0):
        with socket.create_connection(self.addr, timeout=timeout) as s:
            s.sendall(f"GET {path} HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n".encode())
            out = b""
            while chunk := s.recv(65536):
                out += chunk
        return out


@pytest.fixture
def http_backends():
    made = []

    def make(n):
        for _ in range(n):
            made.append(TinyHTTP().start())
        return made[-n:]

    yield make
    for b in made:
        b.stop()


def counts(backends):
    return [len(b.requests) for b in backends]


def hits(front, backends, n=12):
    """Send n requests through front; → how many each backend got."""
    before = counts(backends)
    for i in range(n):
        assert b" 200 " in front.get(f"/r/{i}").split(b"\r\n", 1)[0] + b" "
    return [a - b for a, b in zip(counts(backends), before)]


def reloads(path):
    return len(lines(path))


@pytest.fixture
def nginx_setup(tmp_path, shared_zookeeper, zk_path, kazoo_client, zklb, http_backends):
    """Three TinyHTTP backends registered in ZooKeeper, zklb rendering nginx_upstream
    into upstream.conf with a real nginx -t check and an nginx reload on change."""
    if not os.path.exists(NGINX):
        pytest.fail("nginx is not installed (Debian: nginx-light); run tests/deps")
    k = kazoo_client(shared_zookeeper.hosts)
    backends = http_backends(3)
    for i, b in enumerate(backends[:2]):
        register(k, zk_path, f"i{i}", b.port)
    upstream = tmp_path / "upstream.conf"
    reload_log = tmp_path / "reloads"
    front = NginxFront(tmp_path / "nginx", upstream)
    render = {"service": SVC, "file": str(upstream), "format": "nginx_upstream",
              "wait": {"min": "200ms", "max": "2s"},
              "check_command": f"{front.check_script} {{{{file}}}}",
              "on_change": f"echo x >> {reload_log}; kill -HUP $(cat {front.pid_file})"}
    lb = zklb(services={SVC: zk_service(zk_path)}, zookeeper=zk_section(shared_zookeeper),
              render=[render])
    wait_until(upstream.exists, 10, what="the first render")
    front.start()
    yield k, backends, upstream, reload_log, front, lb
    front.stop()


def wait_routes(front, backends, want, timeout=10.0):
    """Until requests through front reach exactly the backends flagged in want."""
    def ok():
        h = hits(front, backends)
        return [x > 0 for x in h] == want
    wait_until(ok, timeout, interval=0.1, what=f"nginx routing to {want}")


def test_nginx_follows_registrations(nginx_setup, zk_path):
    k, backends, upstream, reload_log, front, lb = nginx_setup
    text = upstream.read_text()
    assert text.startswith(f"upstream {SVC} {{\n") and text.count("server ") == 2
    wait_routes(front, backends, [True, True, False])

    k.delete(f"{zk_path}/i0")
    wait_until(lambda: f":{backends[0].port} " not in upstream.read_text(), 10,
               what="i0 gone from the file")
    wait_routes(front, backends, [False, True, False])

    register(k, zk_path, "i2", backends[2].port)
    wait_routes(front, backends, [False, True, True])
    # Three writes (start, removal, addition), each through the check and on_change;
    # the first on_change ran before nginx was up (kill found no pid file).
    st = render_state(lb)
    assert st["written"] == 3 and st["last_check_exit"] == 0 and st["on_change_runs"] == 3
    assert reloads(reload_log) == 3 and st["last_on_change_exit"] == 0


def test_storm_costs_at_most_two_reloads(tmp_path, shared_zookeeper, zk_path, kazoo_client, zklb):
    k = kazoo_client(shared_zookeeper.hosts)
    register(k, zk_path, "base", 20000)
    out, reload_log = tmp_path / "lines.txt", tmp_path / "reloads"
    lb = zklb(services={SVC: zk_service(zk_path)}, zookeeper=zk_section(shared_zookeeper),
              render=[{"service": SVC, "file": str(out), "format": "lines", "instances": "all",
                       "wait": {"min": "500ms", "max": "5s"},
                       "on_change": f"echo x >> {reload_log}"}])
    wait_until(lambda: reloads(reload_log) == 1, 10, what="the first render's on_change")
    t0 = time.monotonic()
    for i in range(30):
        register(k, zk_path, f"s{i:02d}", 21000 + i)
        time.sleep(max(0.0, t0 + (i + 1) / 30 - time.monotonic()))
    wait_until(lambda: len(lines(out)) == 31, 10, what="all 31 instances in the file")
    time.sleep(1.0)	# a third reload would come within wait.min of the last change
    assert reloads(reload_log) - 1 <= 2, f"{reloads(reload_log) - 1} reloads for a 1 s storm"
    assert lines(out) == [f"127.0.0.1:{p}" for p in [20000] + list(range(21000, 21030))]
    assert render_state(lb)["on_change_runs"] == reloads(reload_log)


def test_empty_set_keeps_the_file(tmp_path, shared_zookeeper, zk_path, kazoo_client, zklb):
    k = kazoo_client(shared_zookeeper.hosts)
    for i in range(3):
        register(k, zk_path, f"i{i}", 22000 + i)
    out = tmp_path / "lines.txt"
    lb = zklb(services={SVC: zk_service(zk_path) | {"discovery": {
        "type": "curator", "path": zk_path, "keep_last_known": False, "collapse_guard": 1}}},
              zookeeper=zk_section(shared_zookeeper),
              render=[{"service": SVC, "file": str(out), "format": "lines", "instances": "all",
                       "wait": {"min": "100ms", "max": "1s"}}])
    wait_until(lambda: len(lines(out)) == 3, 10, what="three instances in the file")
    before = out.read_bytes()
    for i in range(3):
        k.delete(f"{zk_path}/i{i}")
    wait_until(lambda: render_state(lb)["below_min_instances"] >= 1, 10,
               what="a render skipped below min_instances")
    assert render_state(lb)["instances"] == 0
    assert out.read_bytes() == before
    assert lb.metrics().value("zklb_render_skipped_total", service=SVC, file=str(out),
                              reason="below_min_instances") >= 1


def test_failing_check_keeps_file_and_nginx_serving(nginx_setup, zk_path):
    k, backends, upstream, reload_log, front, lb = nginx_setup
    wait_routes(front, backends, [True, True, False])
    before, n_reloads = upstream.read_bytes(), reloads(reload_log)
    front.refuse.touch()
    register(k, zk_path, "i2", backends[2].port)
    wait_until(lambda: render_state(lb)["check_failed"] >= 1, 15, what="the check to refuse")
    assert render_state(lb)["last_check_exit"] == 3
    assert "refused by the test" in lb.log()
    assert upstream.read_bytes() == before
    assert reloads(reload_log) == n_reloads
    assert not [p for p in upstream.parent.iterdir() if p.name.startswith(".upstream.conf.")]
    wait_routes(front, backends, [True, True, False])	# nginx still serves the old set


def test_zookeeper_down_changes_nothing(tmp_path, zookeeper, kazoo_client, zklb):
    k = kazoo_client(zookeeper.hosts)
    for i in range(2):
        register(k, "/svc/web", f"i{i}", 23000 + i)
    out, reload_log = tmp_path / "up.conf", tmp_path / "reloads"
    lb = zklb(services={SVC: zk_service("/svc/web")}, zookeeper=zk_section(zookeeper),
              render=[{"service": SVC, "file": str(out), "format": "nginx_upstream",
                       "instances": "all", "wait": {"min": "100ms", "max": "1s"},
                       "on_change": f"echo x >> {reload_log}"}])
    wait_until(lambda: reloads(reload_log) == 1, 10, what="the first render")
    before = out.read_bytes()
    k.stop()
    zookeeper.stop()
    wait_until(lambda: lb.admin_json("/services")["services"][SVC]["discovery"] == "disconnected",
               10, what="discovery disconnected")
    time.sleep(3.0)	# past the 2 s session timeout: the session is gone too
    assert out.read_bytes() == before and reloads(reload_log) == 1


def test_hostile_values_never_reach_the_file(tmp_path, shared_zookeeper, zk_path, kazoo_client,
                                             zklb):
    k = kazoo_client(shared_zookeeper.hosts)
    register(k, zk_path, "good", 24000, payload={"zone": "a"})
    # An address that tries to close the block and open a server of its own.
    k.create(f"{zk_path}/inj1", curator("inj1", 24001, host="10.0.0.1:80; }\nserver { listen 81"))
    k.create(f"{zk_path}/inj2", curator("inj2", 24002, host="10.0.0.2;include/etc/passwd"))
    # An id with a brace and a payload value with a quote, for the json format.
    k.create(f"{zk_path}/x}}{{", curator("x}{", 24003))
    register(k, zk_path, "inj4", 24004, payload={"zone": "a\"},{\"id\":\"evil"})
    up, js = tmp_path / "up.conf", tmp_path / "all.json"
    lb = zklb(services={SVC: zk_service(zk_path)}, zookeeper=zk_section(shared_zookeeper),
              render=[{"service": SVC, "file": str(up), "format": "haproxy_servers",
                       "instances": "all", "wait": {"min": "100ms", "max": "1s"}},
                      {"service": SVC, "file": str(js), "format": "json", "instances": "all",
                       "wait": {"min": "100ms", "max": "1s"}}])
    wait_until(lambda: up.exists() and js.exists(), 10, what="both files")
    text = up.read_text()
    assert text == "    server good 127.0.0.1:24000 weight 1\n" \
                   "    server inj4 127.0.0.1:24004 weight 1\n"
    doc = json.loads(js.read_text())
    assert [i["id"] for i in doc] == ["good"]
    assert doc[0]["payload"] == {"zone": "a"}
    st = lb.admin_json("/services")["render"]
    assert {x["id"] for x in st[0]["left_out"]} == {"x}{"}
    assert {x["id"] for x in st[1]["left_out"]} == {"x}{", "inj4"}
    assert "payload" in [x for x in st[1]["left_out"] if x["id"] == "inj4"][0]["reason"]
    # The two bad addresses never became instances at all.
    assert lb.admin_json("/services")["services"][SVC]["bad_instances"] >= 2


def test_formats_and_custom_template_byte_for_byte(tmp_path, zklb):
    backends = ["127.0.0.10:8080", ("127.0.0.2:8081", 5), "[::1]:8082"]
    tpl = tmp_path / "hosts.tmpl"
    tpl.write_text("{{! bootstrap list }}\nhosts={{#instances}}{{endpoint}}{{^last}},{{/last}}"
                   "{{/instances}}\ncount={{count}}\n")
    files = {n: tmp_path / n for n in ("lines.txt", "all.json", "hosts.txt")}
    render = [{"service": SVC, "file": str(files["lines.txt"]), "format": "lines"},
              {"service": SVC, "file": str(files["all.json"]), "format": "json"},
              {"service": SVC, "file": str(files["hosts.txt"]), "template": str(tpl)}]
    for r in render:
        r.update({"instances": "all", "wait": {"min": "50ms", "max": "500ms"}})
    svc = static_service(backends) | {"listen": "off"}
    lb = zklb(services={SVC: svc}, render=render)
    wait_until(lambda: all(f.exists() for f in files.values()), 10, what="three files")
    assert files["lines.txt"].read_text() == \
        "127.0.0.2:8081\n127.0.0.10:8080\n[::1]:8082\n"
    assert files["hosts.txt"].read_text() == \
        "hosts=127.0.0.2:8081,127.0.0.10:8080,[::1]:8082\ncount=3\n"
    assert files["all.json"].read_text() == (
        "[\n"
        '  {"id": "127.0.0.2:8081", "address": "127.0.0.2", "port": 8081, "ssl_port": null, '
        '"weight": 5, "payload": {  }},\n'
        '  {"id": "127.0.0.10:8080", "address": "127.0.0.10", "port": 8080, "ssl_port": null, '
        '"weight": 1, "payload": {  }},\n'
        '  {"id": "[::1]:8082", "address": "::1", "port": 8082, "ssl_port": null, '
        '"weight": 1, "payload": {  }}\n'
        "]\n")
    json.loads(files["all.json"].read_text())
    # zklb render prints exactly what the daemon wrote, entry by entry.
    cfg = tmp_path / "render.yaml"
    cfg.write_text(harness.to_yaml(harness.zklb_config({SVC: svc}, render=render)))
    for i, name in enumerate(files):
        r = run_zklb(["render", "-c", str(cfg), "--entry", str(i)])
        assert r.returncode == 0, r.stderr
        assert r.stdout == files[name].read_text()
    # A written file is not written again by a new process with the same set.
    mtimes = [f.stat().st_mtime_ns for f in files.values()]
    lb.stop()
    lb2 = zklb(services={SVC: svc}, render=render)
    wait_until(lambda: all(s["unchanged"] >= 1 for s in lb2.admin_json("/services")["render"]),
               10, what="the same bytes found in place")
    assert [f.stat().st_mtime_ns for f in files.values()] == mtimes


def test_render_command_against_zookeeper(tmp_path, shared_zookeeper, zk_path, kazoo_client, zklb):
    k = kazoo_client(shared_zookeeper.hosts)
    register(k, zk_path, "b", 25001, payload={"zone": "z2"})
    register(k, zk_path, "a", 25000, payload={"zone": "z1", "rack": "r7"})
    out = tmp_path / "zones.txt"
    tpl = tmp_path / "z.tmpl"
    tpl.write_text("{{#instances}}{{id}} {{payload.zone}}{{#payload.rack}} "
                   "rack={{payload.rack}}{{/payload.rack}}\n{{/instances}}")
    render = [{"service": SVC, "file": str(out), "template": str(tpl),
               "wait": {"min": "50ms", "max": "500ms"}}]
    cfg = tmp_path / "r.yaml"
    cfg.write_text(harness.to_yaml(harness.zklb_config(
        {SVC: zk_service(zk_path)}, zookeeper=zk_section(shared_zookeeper), render=render)))
    r = run_zklb(["render", "-c", str(cfg)])
    assert r.returncode == 0, r.stderr
    assert r.stdout == "a z1 rack=r7\nb z2\n"
    lb = zklb(services={SVC: zk_service(zk_path)}, zookeeper=zk_section(shared_zookeeper),
              render=render)
    wait_until(out.exists, 10, what="the file")
    assert out.read_text() == r.stdout
    # Fewer than min_instances: nothing printed, exit 1, the reason said.
    k.delete(f"{zk_path}/a")
    k.delete(f"{zk_path}/b")
    r = run_zklb(["render", "-c", str(cfg)])
    assert r.returncode == 1 and r.stdout == "" and "min_instances" in r.stderr


def test_check_refuses_bad_templates(tmp_path):
    tpl = tmp_path / "bad.tmpl"
    tpl.write_text("upstream x {\n  {{#instances}}server {{adress}};{{/instances}}\n}\n")
    cfg = tmp_path / "c.yaml"
    cfg.write_text(harness.to_yaml(harness.zklb_config(
        {SVC: static_service(["127.0.0.1:1"]) | {"listen": "off"}},
        render=[{"service": SVC, "file": "/tmp/x", "template": str(tpl)},
                {"service": "nope", "file": "/tmp/y", "format": "yaml"},
                {"service": SVC, "file": "/tmp/z"},
                {"service": SVC, "file": "relative", "format": "lines"}])))
    r = run_zklb(["check", "-c", str(cfg)])
    assert r.returncode == 1
    assert f"render[0].template: {tpl}:2:24: unknown tag 'adress'" in r.stderr
    assert "unknown format 'yaml'" in r.stderr
    assert "give either format" in r.stderr and "must be an absolute path" in r.stderr


class HAProxy(ServerProcess):
    """HAProxy in master-worker mode with a frontend in main.cfg and the backend
    section rendered by zklb; SIGUSR2 to the master reloads both files."""

    kind = "haproxy"
    binary = HAPROXY

    def __init__(self, workdir, backend_file):
        super().__init__(workdir)
        self.backend_file = backend_file
        self.main = self.dir / "main.cfg"
        self.main.write_text(f"""global
    maxconn 256
defaults
    mode http
    timeout connect 2s
    timeout client 10s
    timeout server 10s
frontend fe
    bind {self.host}:{self.port}
    default_backend {SVC}
""")

    def argv(self):
        return [self.binary, "-W", "-db", "-f", str(self.main), "-f", str(self.backend_file)]

    def get(self, path):
        with socket.create_connection(self.addr, timeout=5) as s:
            s.sendall(f"GET {path} HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n".encode())
            out = b""
            while chunk := s.recv(65536):
                out += chunk
        return out


def test_haproxy_follows_rendered_server_lines(tmp_path, shared_zookeeper, zk_path, kazoo_client,
                                               zklb, http_backends):
    if not os.path.exists(HAPROXY):
        pytest.fail("haproxy is not installed (Debian: haproxy); run tests/deps")
    k = kazoo_client(shared_zookeeper.hosts)
    backends = http_backends(2)
    register(k, zk_path, "h0", backends[0].port)
    tpl = tmp_path / "backend.tmpl"
    tpl.write_text(f"backend {{{{service}}}}\n    balance roundrobin\n"
                   + "{{#instances}}\n    server {{id}} {{endpoint}} weight {{weight}}\n{{/instances}}\n")
    out = tmp_path / "backend.cfg"
    hap = HAProxy(tmp_path / "haproxy", out)
    render = [{"service": SVC, "file": str(out), "template": str(tpl),
               "wait": {"min": "100ms", "max": "1s"},
               "check_command": f"{HAPROXY} -c -q -f {hap.main} -f {{{{file}}}}",
               "on_change": f"[ -f {tmp_path}/hap.pid ] && kill -USR2 $(cat {tmp_path}/hap.pid) || true"}]
    zklb(services={SVC: zk_service(zk_path)}, zookeeper=zk_section(shared_zookeeper), render=render)
    wait_until(out.exists, 10, what="the backend file")
    hap.start()
    (tmp_path / "hap.pid").write_text(str(hap.proc.pid))
    try:
        def routed(want):
            def ok():
                before = counts(backends)
                for i in range(6):
                    assert b" 200 " in hap.get(f"/r/{i}")
                return [a > b for a, b in zip(counts(backends), before)] == want
            return ok
        wait_until(routed([True, False]), 10, interval=0.1, what="haproxy on h0 only")
        register(k, zk_path, "h1", backends[1].port)
        wait_until(routed([True, True]), 10, interval=0.1, what="haproxy on both")
        k.delete(f"{zk_path}/h0")
        wait_until(routed([False, True]), 10, interval=0.1, what="haproxy on h1 only")
    finally:
        hap.stop()
