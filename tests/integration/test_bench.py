"""Integration tests for zklb-bench: every client mode against the server modes it
is meant for, with the client's byte and request counts checked exactly against the
server's own counters (or nginx's access log for http). Runs are short and bounded
(count and time); no timing is asserted.

The binary is $ZKLB_BUILD/bench/zklb-bench ($ZKLB_BUILD relative to the repository
root, default build/). Run:  /usr/bin/python3 -m pytest tests/integration/test_bench.py
"""

import json
import os
import select
import shutil
import signal
import socket
import subprocess
import time
from pathlib import Path

import pytest

import harness

ROOT = Path(__file__).resolve().parents[2]
RUN_TIMEOUT = 20  # seconds; a client run that takes longer is a bug


def bench_binary():
    d = Path(os.environ.get("ZKLB_BUILD", "build"))
    if not d.is_absolute():
        d = ROOT / d
    return d / "bench" / "zklb-bench"


@pytest.fixture(scope="module")
def bench():
    b = bench_binary()
    if not b.exists():
        pytest.skip(f"zklb-bench not built at {b} (set ZKLB_BUILD)")
    return str(b)


def free_port():
    """A free loopback port below the ephemeral range (harness.free_port): a client
    connecting to it again and again can never be handed it as its own source port
    (a TCP self-connect would succeed where a refusal is expected)."""
    return harness.free_port()


def read_line(proc, timeout=5.0):
    """One line of proc's stdout, or fail after timeout."""
    deadline = time.monotonic() + timeout
    buf = b""
    fd = proc.stdout.fileno()
    while not buf.endswith(b"\n"):
        left = deadline - time.monotonic()
        if left <= 0:
            raise AssertionError(f"no line from pid {proc.pid} within {timeout}s (got {buf!r})")
        r, _, _ = select.select([fd], [], [], left)
        if r:
            c = os.read(fd, 1)
            if not c:
                raise AssertionError(f"pid {proc.pid} closed stdout (got {buf!r})")
            buf += c
    return buf.decode()


class Server:
    """A `zklb-bench serve` on free loopback ports; stopped by PID at teardown."""

    def __init__(self, bench, mode, *args):
        self.proc = subprocess.Popen(
            [bench, "serve", "--listen", "127.0.0.1:0", "--status-port", "0", "--mode", mode, *args],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        hello = json.loads(read_line(self.proc))
        self.addr = hello["listen"]
        host, port = hello["status"].rsplit(":", 1)
        self.status_addr = (host, int(port))

    def status(self):
        with socket.create_connection(self.status_addr, timeout=5) as s:
            data = b""
            while True:
                chunk = s.recv(4096)
                if not chunk:
                    break
                data += chunk
        return json.loads(data)

    def settled(self, timeout=5.0):
        """The counters once every connection has closed (all bytes counted)."""
        deadline = time.monotonic() + timeout
        while True:
            st = self.status()
            if st["open"] == 0 or time.monotonic() > deadline:
                return st
            time.sleep(0.02)

    def stop(self):
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc.stdout.close()
        self.proc.stderr.close()


@pytest.fixture
def server(bench):
    started = []

    def start(mode, *args):
        s = Server(bench, mode, *args)
        started.append(s)
        return s

    yield start
    for s in started:
        s.stop()


def run(bench, mode, target, *args, expect_rc=0):
    """Run a client with --json; returns the parsed result (last stdout line)."""
    p = subprocess.run([bench, mode, "--json", *args, target],
                       capture_output=True, timeout=RUN_TIMEOUT, text=True)
    assert p.returncode == expect_rc, p.stderr
    lines = p.stdout.strip().splitlines()
    res = json.loads(lines[-1])
    res["_stdout"] = lines[:-1]
    res["_stderr"] = p.stderr
    return res


def assert_clean(res):
    assert res["errors"] == 0, res["_stderr"]
    assert res["connect_failures"] == 0


# --- rr ------------------------------------------------------------------------

def test_rr_echo_count_bound_exact(bench, server):
    s = server("echo", "--req-size", "100")
    r = run(bench, "rr", s.addr, "-c", "8", "-n", "2000", "--req-size", "100", "-d", "2s")
    st = s.settled()
    assert_clean(r)
    assert r["requests"] == 2000
    assert r["latency_us"]["count"] == 2000
    assert r["connections_opened"] == 8 == st["accepted"]
    assert r["bytes_sent"] == 2000 * 100 == st["bytes_in"]
    assert r["bytes_received"] == 2000 * 100 == st["bytes_out"]
    assert st["requests"] == 2000
    assert st["resets"] == 0


def test_rr_fixed_asymmetric_sizes_exact(bench, server):
    s = server("fixed:3000", "--req-size", "10")
    r = run(bench, "rr", s.addr, "-c", "3", "-n", "900", "--req-size", "10",
            "--reply-size", "3000", "-d", "2s")
    st = s.settled()
    assert_clean(r)
    assert r["requests"] == 900 == st["requests"]
    assert r["bytes_sent"] == 9000 == st["bytes_in"]
    assert r["bytes_received"] == 900 * 3000 == st["bytes_out"]


def test_rr_large_echo_both_directions_at_once(bench, server):
    # 1 MB requests: the echo comes back while the client still sends.
    s = server("echo", "--req-size", "1m")
    r = run(bench, "rr", s.addr, "-c", "2", "-n", "20", "--req-size", "1m", "-d", "2s")
    st = s.settled()
    assert_clean(r)
    assert r["requests"] == 20 == st["requests"]
    assert r["bytes_sent"] == 20 << 20 == st["bytes_in"] == st["bytes_out"] == r["bytes_received"]


def test_rr_duration_bound(bench, server):
    s = server("echo")
    r = run(bench, "rr", s.addr, "-c", "4", "-d", "500ms")
    st = s.settled()
    assert_clean(r)
    assert r["requests"] > 0
    assert r["latency_us"]["count"] == r["requests"]
    # In-flight requests are abandoned at the deadline: what was sent all arrived,
    # what was received was all sent; completed requests are fully accounted.
    assert r["bytes_sent"] == st["bytes_in"]
    assert r["bytes_received"] <= st["bytes_out"]
    assert r["requests"] * 64 <= r["bytes_received"]
    assert r["bytes_sent"] - r["requests"] * 64 <= 4 * 64
    assert st["accepted"] == 4


def test_rr_open_loop_rate(bench, server):
    s = server("echo")
    r = run(bench, "rr", s.addr, "-c", "4", "-n", "300", "--rate", "3000", "-d", "2s")
    st = s.settled()
    assert_clean(r)
    assert r["rate"] == 3000
    assert r["requests"] == 300 == st["requests"]
    assert r["bytes_sent"] == 300 * 64 == st["bytes_in"]
    p = r["latency_us"]
    assert p["min"] <= p["p50"] <= p["p90"] <= p["p99"] <= p["p99.9"] <= p["max"]


def test_rr_threads_split_connections(bench, server):
    s = server("echo")
    r = run(bench, "rr", s.addr, "-c", "6", "-t", "3", "-n", "600", "-d", "2s")
    st = s.settled()
    assert_clean(r)
    assert r["threads"] == 3
    assert r["requests"] == 600 == st["requests"]
    assert r["connections_opened"] == 6 == st["accepted"]


def test_rr_protocol_violation_is_an_error(bench, server):
    # The server echoes 64 bytes while the client expects 32.
    s = server("echo")
    r = run(bench, "rr", s.addr, "-c", "1", "-d", "300ms", "--req-size", "64", "--reply-size", "32")
    assert r["errors"] > 0
    assert r["requests"] == 0
    assert "more reply bytes than expected" in r["_stderr"]


def test_connect_failures_counted(bench):
    port = free_port()
    r = run(bench, "rr", f"127.0.0.1:{port}", "-c", "2", "-d", "300ms")
    assert r["requests"] == 0
    assert r["connect_failures"] > 0
    assert r["errors"] >= r["connect_failures"]
    assert r["connections_opened"] == 0


# --- conn ----------------------------------------------------------------------

def test_conn_client_closes_first(bench, server):
    s = server("fixed:200", "--req-size", "20")
    r = run(bench, "conn", s.addr, "-c", "4", "-n", "400", "--req-size", "20",
            "--reply-size", "200", "-d", "5s")
    st = s.settled()
    assert_clean(r)
    assert r["requests"] == 400 == st["requests"]
    assert r["connections_opened"] == 400 == st["accepted"] == st["closed"]
    assert r["bytes_sent"] == 400 * 20 == st["bytes_in"]
    assert r["bytes_received"] == 400 * 200 == st["bytes_out"]
    assert st["resets"] == 0


def test_conn_server_closes_first(bench, server):
    s = server("fixed:100", "--req-size", "10", "--close")
    r = run(bench, "conn", s.addr, "-c", "4", "-n", "300", "--req-size", "10",
            "--reply-size", "100", "--close", "server", "-d", "5s")
    st = s.settled()
    assert_clean(r)
    assert r["requests"] == 300 == st["requests"]
    assert r["connections_opened"] == 300 == st["accepted"]
    assert r["bytes_received"] == 300 * 100 == st["bytes_out"]


def test_conn_echo_close_open_loop(bench, server):
    s = server("echo", "--req-size", "50", "--close")
    r = run(bench, "conn", s.addr, "-c", "2", "-n", "100", "--req-size", "50",
            "--close", "server", "--rate", "1000", "-d", "5s")
    st = s.settled()
    assert_clean(r)
    assert r["requests"] == 100 == st["accepted"] == st["requests"]
    assert r["bytes_sent"] == 5000 == st["bytes_in"] == st["bytes_out"]


# --- stream --------------------------------------------------------------------

def test_stream_up_byte_bound_exact(bench, server):
    s = server("sink")
    r = run(bench, "stream", s.addr, "-c", "3", "--bytes", "30m", "-d", "5s")
    st = s.settled()
    assert_clean(r)
    assert r["requests"] == 3  # streams finished
    assert r["bytes_sent"] == 30 << 20 == st["bytes_in"]
    assert st["accepted"] == 3


def test_stream_up_duration_bound(bench, server):
    s = server("sink")
    r = run(bench, "stream", s.addr, "-c", "2", "-d", "300ms")
    st = s.settled()
    assert_clean(r)
    assert r["bytes_sent"] > 0
    assert r["bytes_sent"] == st["bytes_in"]


def test_stream_down_finite_source_exact(bench, server):
    s = server("source:4m")
    r = run(bench, "stream", s.addr, "-c", "2", "--direction", "down", "-d", "5s")
    st = s.settled()
    assert_clean(r)
    assert r["requests"] == 2
    assert r["bytes_received"] == 8 << 20 == st["bytes_out"]


def test_stream_down_byte_bound(bench, server):
    s = server("source")
    r = run(bench, "stream", s.addr, "-c", "2", "--direction", "down", "--bytes", "10m", "-d", "5s")
    st = s.settled()
    assert_clean(r)
    assert r["requests"] == 2
    # Each stream stops reading at its share, so exactly 10 MiB were counted;
    # the endless source wrote at least that.
    assert r["bytes_received"] == 10 << 20
    assert st["bytes_out"] >= r["bytes_received"]


# --- idle ----------------------------------------------------------------------

def test_idle_holds_connections(bench, server):
    s = server("echo")
    p = subprocess.Popen([bench, "idle", "--json", "-c", "200", "-d", "5s", s.addr],
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        assert read_line(p, timeout=5).strip() == "ready 200"
        st = s.status()
        assert st["open"] == 200 and st["accepted"] == 200 and st["requests"] == 200
        p.send_signal(signal.SIGINT)  # ends the hold early, result still printed
        out, err = p.communicate(timeout=RUN_TIMEOUT)
    finally:
        if p.poll() is None:
            p.kill()
            p.wait()
    assert p.returncode == 0, err
    r = json.loads(out.decode().strip().splitlines()[-1])
    assert r["idle_ready"] == 200 and r["errors"] == 0
    assert r["bytes_sent"] == 200 * 64
    assert s.settled()["open"] == 0


# --- server --------------------------------------------------------------------

def test_server_sigusr1_prints_counters(bench, server):
    s = server("echo")
    run(bench, "rr", s.addr, "-c", "1", "-n", "10", "-d", "2s")
    s.settled()
    s.proc.send_signal(signal.SIGUSR1)
    st = json.loads(read_line(s.proc))
    assert st["requests"] == 10 and st["bytes_in"] == 640 and st["open"] == 0


@pytest.mark.parametrize("args", [
    ["rr"],                                        # no target
    ["rr", "-c", "0", "127.0.0.1:1"],
    ["rr", "-d", "forever", "127.0.0.1:1"],
    ["stream", "--rate", "10", "127.0.0.1:1"],
    ["warp", "127.0.0.1:1"],
    ["serve", "--mode", "echo"],                   # no --listen
    ["serve", "--listen", "127.0.0.1:0", "--mode", "fixed:x"],
])
def test_usage_errors(bench, args):
    p = subprocess.run([bench, *args], capture_output=True, timeout=10)
    assert p.returncode == 2


# --- http against nginx --------------------------------------------------------

NGINX_CONF = """
daemon off;
master_process off;
worker_processes 1;
pid {dir}/nginx.pid;
error_log {dir}/error.log warn;
events {{ worker_connections 1024; }}
http {{
  log_format acct '$connection $request_length $bytes_sent $status';
  access_log {dir}/access.log acct;
  client_body_temp_path {dir}/tmp;
  proxy_temp_path {dir}/tmp;
  fastcgi_temp_path {dir}/tmp;
  uwsgi_temp_path {dir}/tmp;
  scgi_temp_path {dir}/tmp;
  keepalive_requests 100000;
  server {{
    listen 127.0.0.1:{port};
    root {dir}/html;
  }}
}}
"""


@pytest.fixture
def nginx(tmp_path):
    exe = shutil.which("nginx") or ("/usr/sbin/nginx" if os.path.exists("/usr/sbin/nginx") else None)
    if not exe:
        pytest.skip("nginx is not installed")
    (tmp_path / "html").mkdir()
    (tmp_path / "tmp").mkdir()
    (tmp_path / "html" / "1k.bin").write_bytes(b"x" * 1024)
    port = free_port()
    conf = tmp_path / "nginx.conf"
    conf.write_text(NGINX_CONF.format(dir=tmp_path, port=port))
    p = subprocess.Popen([exe, "-p", str(tmp_path), "-c", str(conf), "-e", str(tmp_path / "error.log")],
                         stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 5
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            break
        except OSError:
            if p.poll() is not None or time.monotonic() > deadline:
                p.kill()
                pytest.skip("nginx did not start: " + (tmp_path / "error.log").read_text()[-500:])
            time.sleep(0.05)

    def rows():
        try:
            text = (tmp_path / "access.log").read_text()
        except FileNotFoundError:
            return []
        # Complete lines only: the last one may still be being written.
        return [l.split() for l in text.split("\n")[:-1] if l]

    def access(expect):
        """(connection ids, request bytes, response bytes, statuses) from the log,
        once it holds `expect` rows (nginx writes a row when its request ends, a
        moment after the client has its answer) or after 5 s."""
        deadline = time.monotonic() + 5
        while len(got := rows()) < expect and time.monotonic() < deadline:
            time.sleep(0.02)
        return ({r[0] for r in got}, sum(int(r[1]) for r in got),
                sum(int(r[2]) for r in got), [r[3] for r in got])

    yield f"127.0.0.1:{port}", access
    p.terminate()
    try:
        p.wait(5)
    except subprocess.TimeoutExpired:
        p.kill()
        p.wait()


def test_http_keepalive_exact(bench, nginx):
    addr, access = nginx
    r = run(bench, "http", addr, "-c", "5", "-n", "500", "--path", "/1k.bin", "-d", "5s")
    conns, req_bytes, resp_bytes, statuses = access(500)
    assert_clean(r)
    assert r["requests"] == 500 == len(statuses)
    assert r["http_non2xx"] == 0 and set(statuses) == {"200"}
    assert r["connections_opened"] == 5 == len(conns)
    assert r["bytes_sent"] == req_bytes
    assert r["bytes_received"] == resp_bytes


def test_http_connection_close(bench, nginx):
    addr, access = nginx
    r = run(bench, "http", addr, "-c", "4", "-n", "200", "--http-close", "--path", "/1k.bin", "-d", "5s")
    conns, req_bytes, resp_bytes, statuses = access(200)
    assert_clean(r)
    assert r["requests"] == 200 == len(statuses)
    assert r["connections_opened"] == 200 == len(conns)
    assert r["bytes_sent"] == req_bytes
    assert r["bytes_received"] == resp_bytes


def test_http_non2xx_counted(bench, nginx):
    addr, access = nginx
    r = run(bench, "http", addr, "-c", "2", "-n", "50", "--path", "/missing", "-d", "5s")
    _, _, resp_bytes, statuses = access(50)
    assert_clean(r)
    assert r["requests"] == 50 == r["http_non2xx"]
    assert set(statuses) == {"404"}
    assert r["bytes_received"] == resp_bytes


def test_http_open_loop(bench, nginx):
    addr, access = nginx
    r = run(bench, "http", addr, "-c", "2", "-n", "100", "--rate", "500", "--path", "/1k.bin", "-d", "5s")
    _, _, resp_bytes, statuses = access(100)
    assert_clean(r)
    assert r["requests"] == 100 == len(statuses)
    assert r["bytes_received"] == resp_bytes


# --- bench/compare ----------------------------------------------------------------


def test_compare_runs_real_clients_end_to_end(bench, tmp_path):
    """bench/compare in a short mode, end to end: zklb with 1 and 2 workers and a variant
    of it, HAProxy and direct, through zklb-bench, redis-benchmark and wrk. Counts, not timing: every
    proxy has a result in every workload, without errors, with the whole-machine CPU
    figure, and redis-benchmark's one-request connections all reached a backend."""
    for exe in ("haproxy", "redis-server", "redis-benchmark", "wrk", "nginx"):
        assert shutil.which(exe) or os.path.exists(f"/usr/sbin/{exe}"), \
            f"{exe} missing: run tests/deps"
    build = Path(bench).parents[1]
    workloads = ["rr", "latency", "redis", "redis-conn", "wrk-close"]
    proxies = ["zklb-w1", "zklb-w2", "zklb-idle", "haproxy", "direct"]
    p = subprocess.run([str(ROOT / "bench" / "compare"), "--build", str(build),
                        "--proxies", "zklb,haproxy,direct", "--workers", "1,2",
                        # a variant: one more zklb with a key added to every service
                        "--zklb-variant", "idle=idle_timeout: 5m",
                        "--workloads", ",".join(workloads), "--runs", "1", "--duration", "1",
                        "--pause", "0.1", "--redis-rate", "2000", "--out", str(tmp_path)],
                       capture_output=True, text=True, timeout=240)
    assert p.returncode == 0, p.stderr[-2000:]
    [js] = list(tmp_path.glob("*.json"))
    res = json.loads(js.read_text())["results"]
    got = {(r["workload"], r["proxy"]): r for r in res}
    assert set(got) == {(w, x) for w in workloads for x in proxies}, p.stderr[-2000:]
    for (w, x), r in got.items():
        assert r["errors"] == 0, (w, x, r)
        assert r["requests"] > 0, (w, x, r)
        assert r["mach_us"] > 0, (w, x, r)
        if w != "latency":
            assert r["ours_us"] > 0, (w, x, r)
        assert r["p50_us"] > 0 and r["p99_us"] >= r["p50_us"], (w, x, r)
        if x != "direct":
            assert r["cpu_per_100k"] > 0 and r["sleeps"] >= 0, (w, x, r)
            if w == "latency":  # the same run's direct p50 subtracted
                assert r["p50_added_us"] == r["p50_us"] - got[(w, "direct")]["p50_us"], r
    for x in proxies:
        # redis-benchmark -k 0: every request on a connection of its own, each relayed
        assert got[("redis-conn", x)]["upstream_accepts"] >= got[("redis-conn", x)]["requests"]
        assert got[("redis", x)]["requests"] == 2000
    md = next(tmp_path.glob("*.md")).read_text()
    assert "Scaling with workers" in md and "whole-machine CPU" in md


def test_counts_measures_a_relay(bench):
    """bench/counts in a tiny mode through zklb: per request a relay makes at least a
    recv and a send per message each way (4 syscalls), per connection at least an
    accept, a socket, a connect and two closes; the client makes the same per-request
    syscalls with or without a proxy in between (its side is measured too)."""
    if not shutil.which("strace") or subprocess.run(
            ["perf", "stat", "-e", "raw_syscalls:sys_enter", "true"],
            capture_output=True).returncode != 0:
        pytest.skip("perf (with tracepoints) or strace not usable here")
    build = Path(bench).parents[1]
    p = subprocess.run([str(ROOT / "bench" / "counts"), "--build", str(build), "--proxies", "zklb",
                        "--rounds", "1", "--requests", "2000", "--conns", "200"],
                       capture_output=True, text=True, timeout=180)
    assert p.returncode == 0, p.stderr[-2000:]

    def cell(label):
        row = next(ln for ln in p.stdout.splitlines() if ln.startswith(f"| {label} |"))
        return float(row.split("|")[2].strip().split("–")[0].split(" ")[0])

    assert 4 <= cell("proxy: syscalls") < 20
    assert 6 <= cell("redis-benchmark: syscalls") < 20
    assert 5 <= cell("syscalls") < 60  # per connection
