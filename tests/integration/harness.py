"""Integration-test harness for zklb: processes and sockets the tests declare.

Everything here is loopback-only and bounded in time. Tests use it through the
fixtures in conftest.py; nothing depends on the current directory (paths are
resolved from this file's location, binaries from $ZKLB_BUILD).

  Backend      threaded TCP server (one selector thread): echo, tag, greet, hold,
               digest, close, rst, http modes, or a custom protocol class
  ClosedPort   a reserved port nobody listens on: connects get RST at once
  Blackhole    a listener whose accept queue is full: connects hang (SYN dropped)
  Zklb         the daemon under test, started from a config dict or YAML string
  ZooKeeper    a standalone Debian ZooKeeper 3.8 in a temporary directory
  Ensemble     three ZooKeeper nodes on loopback, with leader lookup and kill
  NginxHTTP, RedisServer, Memcached
               real servers as backends, counting their accepts (stub_status, INFO,
               stats); TinyHTTP: a threaded HTTP/1.1 server with delayed answers;
               SockReader: buffered HTTP / RESP / line reads for clients

The metric names and admin JSON shape the tests expect are in one place below
(METRIC, services_of, instances_of) so they are easy to adapt to docs/design.md.
"""

import errno
import hashlib
import http.client
import json
import os
import random
import re
import resource
import selectors
import shutil
import signal
import socket
import struct
import subprocess
import threading
import time
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
LOOPBACK = "127.0.0.1"

# ---------------------------------------------------------------------------
# What the tests expect from zklb's admin API (docs/design.md §4 "Admin HTTP API").
# ---------------------------------------------------------------------------

METRIC = {
    "active": "zklb_backend_connections_active",
    "total": "zklb_backend_connections_total",
    "bytes_in": "zklb_backend_bytes_in_total",
    "bytes_out": "zklb_backend_bytes_out_total",
    "connect_failures": "zklb_backend_connect_failures_total",
}

INSTANCE_STATES = {"healthy", "ejected", "checking", "draining"}
DISCOVERY_STATES = {"connected", "disconnected", "cached"}


def backend_labels(service, backend):
    """Labels of a per-backend series: service="web", backend="host:port"."""
    return {"service": service, "backend": address_of(backend)}


def services_of(doc):
    """GET /services → {name: service}. Accepts {"services": {...}}, {"services": [...]},
    a bare {name: {...}} map or a list of objects with a "name"."""
    if isinstance(doc, dict) and "services" in doc:
        doc = doc["services"]
    if isinstance(doc, list):
        return {s["name"]: s for s in doc}
    return doc


def instances_of(service):
    """A service object of GET /services → its list of instance objects."""
    insts = service.get("instances")
    if insts is None:
        insts = service.get("backends", [])
    if isinstance(insts, dict):
        insts = list(insts.values())
    return insts


def instance_address(inst):
    return f"{inst['address']}:{inst['port']}"


# ---------------------------------------------------------------------------
# Small utilities
# ---------------------------------------------------------------------------


def build_dir():
    """$ZKLB_BUILD (relative paths are relative to the repository root), or build/."""
    d = Path(os.environ.get("ZKLB_BUILD", "build"))
    return d if d.is_absolute() else ROOT / d


def zklb_binary():
    return build_dir() / "src" / "zklb"


def bench_binary():
    return build_dir() / "bench" / "zklb-bench"


def project_version():
    m = re.search(r"version\s*:\s*'([^']+)'", (ROOT / "meson.build").read_text())
    return m.group(1) if m else None


def wait_until(pred, timeout=5.0, interval=0.02, what="condition"):
    """Poll pred() until it returns a truthy value; return it, or raise after timeout."""
    deadline = time.monotonic() + timeout
    last_exc = None
    while True:
        try:
            v = pred()
            if v:
                return v
        except Exception as e:  # noqa: BLE001 - report the last one on timeout
            last_exc = e
        if time.monotonic() >= deadline:
            extra = f" (last error: {last_exc!r})" if last_exc else ""
            raise TimeoutError(f"timed out after {timeout}s waiting for {what}{extra}")
        time.sleep(interval)


# Every process the harness starts, so that none outlives the test session even
# when pytest itself is stopped (SIGTERM from a time bound): see kill_tracked().
_tracked = set()
_tracked_lock = threading.Lock()


def track(proc):
    """Remember a subprocess.Popen for kill_tracked(). Returns proc."""
    with _tracked_lock:
        for p in [p for p in _tracked if p.poll() is not None]:
            _tracked.discard(p)
        _tracked.add(proc)
    return proc


def kill_tracked():
    """SIGKILL every tracked process still running, with its process group (the
    harness starts each in a session of its own). Processes already reaped are
    skipped, so a recycled PID is never signalled. For emergencies: fixtures stop
    their processes normally."""
    with _tracked_lock:
        procs = [p for p in _tracked if p.poll() is None]
        _tracked.clear()
    for p in procs:
        for kill in (os.killpg, os.kill):
            try:
                kill(p.pid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass
        try:
            p.wait(5)
        except subprocess.TimeoutExpired:
            pass


_given_ports = set()
_ports_lock = threading.Lock()


def free_port(host=LOOPBACK):
    """A TCP port free on host, for a server that someone else (zklb, ZooKeeper) binds.

    Picked at random below the kernel's ephemeral range so that outgoing connections
    never take it as a source port, never handed out twice by this process, and
    checked by binding it. Parallel runs on one machine collide only by bad luck
    between the check and the bind.
    """
    lo, hi = 20000, 32000
    try:
        eph_lo = int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
        hi = min(hi, eph_lo)
    except (OSError, ValueError, IndexError):
        pass
    rng = random.SystemRandom()
    for _ in range(500):
        port = rng.randrange(lo, hi)
        with _ports_lock:
            if port in _given_ports:
                continue
            s = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET)
            try:
                s.bind((host, port))
            except OSError:
                continue
            finally:
                s.close()
            _given_ports.add(port)
            return port
    raise RuntimeError("no free port found")


def free_addr(host=LOOPBACK):
    return f"{host}:{free_port(host)}"


def split_addr(addr):
    """'127.0.0.1:80' or '[::1]:80' or (host, port) → (host, port)."""
    if isinstance(addr, tuple):
        return addr
    host, _, port = addr.rpartition(":")
    return host.strip("[]"), int(port)


def address_of(x):
    """Backend / ClosedPort / Blackhole / (host, port) / 'host:port' → 'host:port'."""
    if hasattr(x, "address"):
        return x.address
    if isinstance(x, tuple):
        return f"{x[0]}:{x[1]}"
    return str(x)


def random_bytes(n, seed):
    """n reproducible pseudo-random bytes."""
    return random.Random(seed).randbytes(n)


def sha256(data):
    return hashlib.sha256(data).hexdigest()


# ---------------------------------------------------------------------------
# YAML: a tiny block-style emitter (no PyYAML needed). Strings are always
# double-quoted with JSON escapes (valid YAML); numbers and booleans are plain.
# ---------------------------------------------------------------------------


def _yaml_scalar(v):
    if v is None:
        return "null"
    if v is True:
        return "true"
    if v is False:
        return "false"
    if isinstance(v, (int, float)):
        return repr(v)
    if isinstance(v, dict) and not v:
        return "{}"
    if isinstance(v, (list, tuple)) and not v:
        return "[]"
    return json.dumps(str(v))


def _yaml_lines(v, indent):
    pad = "  " * indent
    if isinstance(v, dict) and v:
        for k, x in v.items():
            if isinstance(x, (dict, list, tuple)) and x:
                yield f"{pad}{k}:"
                yield from _yaml_lines(x, indent + 1)
            else:
                yield f"{pad}{k}: {_yaml_scalar(x)}"
    elif isinstance(v, (list, tuple)) and v:
        for x in v:
            if isinstance(x, (dict, list, tuple)) and x:
                sub = list(_yaml_lines(x, indent + 1))
                yield f"{pad}- {sub[0].lstrip()}"
                yield from sub[1:]
            else:
                yield f"{pad}- {_yaml_scalar(x)}"
    else:
        yield pad + _yaml_scalar(v)


def to_yaml(obj):
    return "\n".join(_yaml_lines(obj, 0)) + "\n"


# ---------------------------------------------------------------------------
# Configuration builders
# ---------------------------------------------------------------------------


def static_service(backends, listen=None, **settings):
    """A service with static discovery. backends: Backend objects, 'host:port'
    strings, or (backend, weight) pairs. Other keys (balance, retries, ...) as in
    docs/design.md pass through unchanged."""
    entries = []
    for b in backends:
        if isinstance(b, tuple):
            entries.append(f"{address_of(b[0])} weight={b[1]}")
        else:
            entries.append(address_of(b))
    svc = {
        "listen": listen or free_addr(),
        "discovery": {"type": "static", "backends": entries},
    }
    svc.update(settings)
    return svc


def zklb_config(services, admin=None, workdir=None, **top):
    """A whole zklb config dict: admin on a free port with /metrics uncached,
    cache_dir in workdir, quick drain, info logging; **top overrides top-level keys."""
    cfg = {}
    if workdir is not None:
        cfg["cache_dir"] = str(Path(workdir) / "cache")
    cfg["drain_timeout"] = "5s"
    # Tests read /metrics right after what they measure: no cache (test_admin.py
    # tests admin.metrics_cache itself).
    cfg["admin"] = {"listen": admin or free_addr(), "metrics_cache": "0s"}
    cfg["log"] = {"level": "info", "format": "text"}
    cfg.update(top)
    cfg["services"] = services
    return cfg


def zk_section(zk, **extra):
    """A `zookeeper:` section for a ZooKeeper or Ensemble object: its hosts, a 2 s
    session timeout, and **extra (config_path, ...)."""
    z = {"hosts": zk.hosts, "session_timeout": "2s"}
    z.update(extra)
    return z


# ---------------------------------------------------------------------------
# Client helpers
# ---------------------------------------------------------------------------


def connect(addr, timeout=5.0):
    s = socket.create_connection(split_addr(addr), timeout=timeout)
    s.settimeout(timeout)
    return s


def recv_line(sock, limit=4096):
    buf = b""
    while not buf.endswith(b"\n"):
        chunk = sock.recv(limit)
        if not chunk:
            break
        buf += chunk
    return buf


def recv_all(sock, timeout=10.0, limit=64 << 20):
    """Read until EOF; raise TimeoutError if it does not come within timeout."""
    deadline = time.monotonic() + timeout
    chunks = []
    n = 0
    while True:
        left = deadline - time.monotonic()
        if left <= 0:
            raise TimeoutError(f"no EOF after {timeout}s ({n} bytes read)")
        sock.settimeout(left)
        chunk = sock.recv(1 << 16)
        if not chunk:
            return b"".join(chunks)
        chunks.append(chunk)
        n += len(chunk)
        if n > limit:
            raise AssertionError(f"read more than {limit} bytes")


def echo_roundtrip(sock, payload=b"ping\n"):
    """Send payload and read back as many bytes (fewer if EOF comes first)."""
    sock.sendall(payload)
    got = b""
    while len(got) < len(payload):
        chunk = sock.recv(65536)
        if not chunk:
            break
        got += chunk
    return got


def stream(addr, data, timeout=60.0):
    """Send data (then SHUT_WR) while reading everything back; return what came back."""
    s = connect(addr, timeout)
    err = []

    def send():
        try:
            s.sendall(data)
            s.shutdown(socket.SHUT_WR)
        except OSError as e:
            err.append(e)

    t = threading.Thread(target=send)
    t.start()
    try:
        got = recv_all(s, timeout=timeout)
    finally:
        t.join(timeout)
        s.close()
    assert not err, f"send failed: {err[0]!r}"
    return got


def ask_tag(addr, timeout=5.0, keep=False):
    """Connect to addr, send one byte, read the backend's tag line.
    Returns the tag ('b1'), or (tag, socket) with keep=True (caller closes)."""
    s = connect(addr, timeout)
    try:
        s.sendall(b"?")
        tag = recv_line(s).decode().strip()
    except BaseException:
        s.close()
        raise
    if keep:
        return tag, s
    s.close()
    return tag


def tags(addr, n, timeout=5.0):
    """n sequential short connections; Counter of the tags that answered."""
    return Counter(ask_tag(addr, timeout) for _ in range(n))


def tags_until(addr, want, timeout=5.0, at_least=0):
    """Short connections until every tag in want answered (and at least `at_least`
    connections were made); → Counter of tags. least_conn breaks ties at random,
    so a fixed number of connections may miss one; callers check the Counter's
    keys (nothing unexpected answered)."""
    seen = Counter()
    deadline = time.monotonic() + timeout
    while not set(want) <= set(seen) or sum(seen.values()) < at_least:
        if time.monotonic() > deadline:
            raise AssertionError(f"tags {sorted(want)} not all seen within {timeout}s: "
                                 f"{dict(seen)}")
        seen[ask_tag(addr)] += 1
    return seen


def hold(addr, n, timeout=5.0):
    """n connections kept open; returns [(tag, socket)] (close with close_all)."""
    held = []
    try:
        for _ in range(n):
            held.append(ask_tag(addr, timeout, keep=True))
    except BaseException:
        close_all(held)
        raise
    return held


def close_all(held):
    for x in held:
        (x[1] if isinstance(x, tuple) else x).close()


def reset(sock):
    """Close sock with a TCP RST (SO_LINGER 0)."""
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    sock.close()


def send_then_reset(sock, n):
    """A backend's script: send n bytes, give them 0.3 s to arrive, then reset."""
    sock.sendall(b"x" * n)
    time.sleep(0.3)
    reset(sock)
    return "reset"


def read_to_the_end(sock, timeout):
    """Read until the peer closes: ("eof" (a FIN) or "reset", the bytes read before).
    TimeoutError if it is still open after timeout."""
    got = b""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        sock.settimeout(max(0.1, deadline - time.monotonic()))
        try:
            chunk = sock.recv(65536)
        except ConnectionResetError:
            return "reset", got
        except (socket.timeout, TimeoutError):
            continue
        if not chunk:
            return "eof", got
        got += chunk
    raise TimeoutError(f"still open after {timeout}s ({len(got)} bytes)")


def closed_within(sock, timeout):
    """Wait for the peer to close sock (EOF or reset); return seconds it took,
    or None if still open after timeout. Data that arrives meanwhile is discarded."""
    t0 = time.monotonic()
    deadline = t0 + timeout
    while True:
        left = deadline - time.monotonic()
        if left <= 0:
            return None
        sock.settimeout(left)
        try:
            if not sock.recv(65536):
                return time.monotonic() - t0
        except (ConnectionResetError, BrokenPipeError):
            return time.monotonic() - t0
        except (socket.timeout, TimeoutError):
            return None


def connect_refused(addr, timeout=1.0):
    """True when a connect to addr is refused (nobody listening)."""
    try:
        s = socket.create_connection(split_addr(addr), timeout=timeout)
    except ConnectionRefusedError:
        return True
    except OSError:
        return False
    s.close()
    return False


def raise_nofile(n=None):
    """Raise this process's RLIMIT_NOFILE soft limit (to the hard limit by default)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = hard if n is None else min(n, hard)
    if soft < want:
        resource.setrlimit(resource.RLIMIT_NOFILE, (want, hard))


# ---------------------------------------------------------------------------
# Backends
# ---------------------------------------------------------------------------


class Conn:
    """One accepted connection inside a Backend (used only on its thread)."""

    def __init__(self, backend, sock, peer):
        self.backend = backend
        self.sock = sock
        self.peer = peer
        self.out = bytearray()
        self.received = 0
        self.eof = False                # peer shut its write side
        self.closing = False            # close once `out` is flushed
        self.shut_after_flush = False   # shutdown(SHUT_WR) once `out` is flushed
        self.write_shut = False

    def send(self, data):
        self.out += data

    def close_after_flush(self):
        self.closing = True

    def shutdown_after_flush(self):
        self.shut_after_flush = True

    def reset(self):
        """Close now with RST (SO_LINGER 0)."""
        self.backend._close(self, rst=True)


class Protocol:
    """Base class of backend behaviours. One instance per connection."""

    def __init__(self, conn):
        self.conn = conn

    def on_open(self):
        pass

    def on_data(self, data):
        pass

    def on_eof(self):
        self.conn.close_after_flush()


class Echo(Protocol):
    def on_data(self, data):
        self.conn.send(data)


class Tag(Protocol):
    """Answer the first read with b'<name>\\n', then echo; close on EOF."""

    tagged = False

    def on_data(self, data):
        if not self.tagged:
            self.tagged = True
            self.conn.send(self.conn.backend.name.encode() + b"\n")
            return
        self.conn.send(data)


class Greet(Protocol):
    """Send b'<name>\\n' at once (server speaks first), then echo."""

    def on_open(self):
        self.conn.send(self.conn.backend.name.encode() + b"\n")

    def on_data(self, data):
        self.conn.send(data)


class Hold(Protocol):
    """Accept and never answer; read and discard; close when the client does."""


class Digest(Protocol):
    """Read until EOF, then answer b'<nbytes> <sha256hex>\\n' and close."""

    def on_open(self):
        self.h = hashlib.sha256()
        self.n = 0

    def on_data(self, data):
        self.h.update(data)
        self.n += len(data)

    def on_eof(self):
        self.conn.send(f"{self.n} {self.h.hexdigest()}\n".encode())
        self.conn.close_after_flush()


class CloseAtOnce(Protocol):
    """Accept, then close cleanly (FIN) without a byte."""

    def on_open(self):
        self.conn.close_after_flush()


class ResetAtOnce(Protocol):
    """Accept, then close with RST (SO_LINGER 0)."""

    def on_open(self):
        self.conn.reset()


class HttpHealth(Protocol):
    """A health endpoint beside the tag protocol: a request starting with b'GET '
    gets b'HTTP/1.0 <backend.http_status>' (an empty body) and a close; anything
    else is answered as by Tag. Set backend.http_status at any time."""

    def on_open(self):
        self.buf = b""
        self.tagged = False

    def on_data(self, data):
        if self.tagged:
            self.conn.send(data)
            return
        self.buf += data
        if not b"GET ".startswith(self.buf[:4]):
            self.tagged = True
            self.conn.send(self.conn.backend.name.encode() + b"\n")
            return
        if b"\r\n\r\n" in self.buf:
            status = self.conn.backend.http_status
            self.conn.send(f"HTTP/1.0 {status} Status\r\nContent-Length: 0\r\n"
                           f"Connection: close\r\n\r\n".encode())
            self.conn.close_after_flush()


MODES = {
    "echo": Echo,
    "tag": Tag,
    "greet": Greet,
    "hold": Hold,
    "digest": Digest,
    "close": CloseAtOnce,
    "rst": ResetAtOnce,
    "http": HttpHealth,
}


class Backend:
    """A TCP server on loopback run by one selector thread.

    mode: a name from MODES or a Protocol subclass; it is read at each accept,
    so assigning b.mode changes how the next connections are served. Counters
    (read from any thread): accepts, active, bytes_received. http_status: what
    mode "http" answers health requests with. Supports thousands of connections.
    """

    def __init__(self, name="b1", mode="echo", host=LOOPBACK, port=0, backlog=1024):
        self.name = name
        self.mode = mode
        self.host = host
        self.port = port
        self.backlog = backlog
        self.accepts = 0
        self.bytes_received = 0
        self.http_status = 200
        self.conns = set()
        self._thread = None
        self._lsock = None
        self._sel = None
        self._stop = False
        self._wake_r = self._wake_w = None

    # -- public ---------------------------------------------------------------

    @property
    def address(self):
        return f"{self.host}:{self.port}"

    @property
    def addr(self):
        return (self.host, self.port)

    @property
    def active(self):
        return len(self.conns)

    def start(self):
        fam = socket.AF_INET6 if ":" in self.host else socket.AF_INET
        ls = socket.socket(fam, socket.SOCK_STREAM)
        ls.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        ls.bind((self.host, self.port))
        ls.listen(self.backlog)
        ls.setblocking(False)
        self.port = ls.getsockname()[1]
        self._lsock = ls
        self._stop = False
        self._sel = selectors.DefaultSelector()
        self._wake_r, self._wake_w = socket.socketpair()
        self._wake_r.setblocking(False)
        self._sel.register(ls, selectors.EVENT_READ, None)
        self._sel.register(self._wake_r, selectors.EVENT_READ, "wake")
        self._thread = threading.Thread(target=self._run, name=f"backend-{self.name}",
                                        daemon=True)
        self._thread.start()
        return self

    def stop(self):
        """Close the listener and every connection; the port is free afterwards."""
        if self._thread is None:
            return
        self._stop = True
        try:
            self._wake_w.send(b"x")
        except OSError:
            pass
        self._thread.join(5)
        self._thread = None

    def restart(self):
        """Listen again on the same port."""
        self.stop()
        return self.start()

    def wait_active(self, n, timeout=5.0):
        wait_until(lambda: self.active == n, timeout, what=f"{self.name}.active == {n}"
                   f" (is {self.active})")

    def __repr__(self):
        return f"<Backend {self.name} {self.address} mode={self.mode}>"

    # -- loop -----------------------------------------------------------------

    def _proto(self, conn):
        cls = MODES[self.mode] if isinstance(self.mode, str) else self.mode
        return cls(conn)

    def _run(self):
        try:
            while not self._stop:
                for key, events in self._sel.select(timeout=0.5):
                    if key.data == "wake":
                        try:
                            self._wake_r.recv(64)
                        except OSError:
                            pass
                    elif key.data is None:
                        self._accept()
                    else:
                        self._service(key.data, events)
        finally:
            for c in list(self.conns):
                self._close(c)
            self._sel.close()
            self._lsock.close()
            self._wake_r.close()
            self._wake_w.close()

    def _accept(self):
        for _ in range(64):
            try:
                s, peer = self._lsock.accept()
            except (BlockingIOError, InterruptedError):
                return
            except OSError as e:  # EMFILE and friends: try again on the next turn
                if e.errno in (errno.EMFILE, errno.ENFILE):
                    time.sleep(0.01)
                return
            s.setblocking(False)
            self.accepts += 1
            c = Conn(self, s, peer)
            c.proto = self._proto(c)
            self.conns.add(c)
            self._sel.register(s, selectors.EVENT_READ, c)
            c.proto.on_open()
            self._settle(c)

    def _service(self, c, events):
        if events & selectors.EVENT_READ and not c.eof:
            try:
                data = c.sock.recv(1 << 16)
            except (BlockingIOError, InterruptedError):
                data = None
            except OSError:
                self._close(c)
                return
            if data is not None:
                if data:
                    c.received += len(data)
                    self.bytes_received += len(data)
                    c.proto.on_data(data)
                else:
                    c.eof = True
                    c.proto.on_eof()
        if c not in self.conns:
            return
        if events & selectors.EVENT_WRITE or c.out:
            self._flush(c)
        self._settle(c)

    def _flush(self, c):
        while c.out:
            try:
                n = c.sock.send(c.out)
            except (BlockingIOError, InterruptedError):
                return
            except OSError:
                self._close(c)
                return
            del c.out[:n]

    def _settle(self, c):
        """Close, half-close or re-register c according to its state."""
        if c not in self.conns:
            return
        if c.out:
            self._flush(c)
            if c not in self.conns:
                return
        if not c.out:
            if c.closing:
                self._close(c)
                return
            if c.shut_after_flush and not c.write_shut:
                try:
                    c.sock.shutdown(socket.SHUT_WR)
                except OSError:
                    pass
                c.write_shut = True
            if c.eof and c.write_shut:
                self._close(c)
                return
        ev = 0
        # Backpressure: stop reading while a lot is waiting to be written.
        if not c.eof and len(c.out) < (1 << 20):
            ev |= selectors.EVENT_READ
        if c.out:
            ev |= selectors.EVENT_WRITE
        if ev == 0:
            # Peer finished and nothing to write, but the protocol keeps it open
            # (e.g. hold): just wait for the stop.
            self._sel.unregister(c.sock)
            c.parked = True
            return
        if getattr(c, "parked", False):
            self._sel.register(c.sock, ev, c)
            c.parked = False
        else:
            self._sel.modify(c.sock, ev, c)

    def _close(self, c, rst=False):
        if c not in self.conns:
            return
        self.conns.discard(c)
        if not getattr(c, "parked", False):
            try:
                self._sel.unregister(c.sock)
            except (KeyError, ValueError):
                pass
        if rst:
            try:
                c.sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER,
                                  b"\x01\x00\x00\x00\x00\x00\x00\x00")
            except OSError:
                pass
        c.sock.close()


class ClosedPort:
    """A loopback port that is bound but not listening: connects are refused at
    once, and no one else can take the port while this object lives."""

    def __init__(self, host=LOOPBACK):
        self.host = host
        self._s = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET)
        self._s.bind((host, 0))
        self.port = self._s.getsockname()[1]
        self.name = f"closed:{self.port}"

    @property
    def address(self):
        return f"{self.host}:{self.port}"

    def close(self):
        self._s.close()


class Blackhole:
    """A listener whose accept queue is full and never drained.

    Linux drops SYNs to a listener whose accept queue is full (with the default
    net.ipv4.tcp_abort_on_overflow=0), so a connect to it neither succeeds nor
    is refused: it hangs until the connector gives up — what a host that dropped
    off the network looks like. A closed port on loopback would answer RST at once.
    """

    def __init__(self, host=LOOPBACK):
        self.host = host
        self.name = "blackhole"
        self._l = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET)
        self._l.bind((host, 0))
        self._l.listen(0)
        self.port = self._l.getsockname()[1]
        self._fill = []
        for _ in range(16):
            s = socket.socket(self._l.family)
            s.settimeout(0.3)
            try:
                s.connect((host, self.port))
            except (socket.timeout, TimeoutError):
                s.close()
                break
            self._fill.append(s)
        else:
            self.close()
            raise RuntimeError("could not fill the accept queue: connects do not hang here")

    @property
    def address(self):
        return f"{self.host}:{self.port}"

    def close(self):
        for s in self._fill:
            s.close()
        self._l.close()


# ---------------------------------------------------------------------------
# Prometheus text parsing
# ---------------------------------------------------------------------------

_SAMPLE = re.compile(r"^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})?\s+(\S+)(?:\s+-?\d+)?\s*$")
_LABEL = re.compile(r'\s*([a-zA-Z_][a-zA-Z0-9_]*)\s*=\s*"((?:[^"\\]|\\.)*)"\s*,?')


def _unescape(v):
    return v.replace('\\"', '"').replace("\\n", "\n").replace("\\\\", "\\")


def series_key(name, labels):
    if not labels:
        return name
    inner = ",".join(f'{k}="{labels[k]}"' for k in sorted(labels))
    return f"{name}{{{inner}}}"


class Metrics(dict):
    """{'name{a="1",b="2"}': value} with labels sorted; see value()."""

    def __init__(self):
        super().__init__()
        self.parsed = []  # (name, labels dict, value)

    def value(self, name, **labels):
        """Sum of the series of `name` whose labels include `labels`; None if none."""
        found = [v for n, ls, v in self.parsed
                 if n == name and all(ls.get(k) == str(x) for k, x in labels.items())]
        return sum(found) if found else None

    def names(self):
        return sorted({n for n, _, _ in self.parsed})


def parse_metrics(text):
    m = Metrics()
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        s = _SAMPLE.match(line)
        if not s:
            raise ValueError(f"not a Prometheus sample line: {line!r}")
        name, raw, val = s.groups()
        labels = {}
        if raw:
            pos = 0
            while pos < len(raw):
                lm = _LABEL.match(raw, pos)
                if not lm:
                    raise ValueError(f"bad labels in {line!r}")
                labels[lm.group(1)] = _unescape(lm.group(2))
                pos = lm.end()
        value = float(val)
        m[series_key(name, labels)] = value
        m.parsed.append((name, labels, value))
    return m


# ---------------------------------------------------------------------------
# The daemon under test
# ---------------------------------------------------------------------------

SANITIZER_RE = re.compile(r"ERROR: (?:Address|Leak|Thread|Memory)Sanitizer|runtime error: ")
LEAK_BLOCK_RE = re.compile(r"^(?:Direct|Indirect) leak of .*?(?=^\s*$|^SUMMARY|\Z)", re.M | re.S)
FRAME_RE = re.compile(r"^\s*#\d+ 0x[0-9a-f]+ +(.*)$", re.M)


def upstream_zookeeper_leak_only(report):
    """True when a LeakSanitizer report holds only libzookeeper_mt's own
    allocations: a completion zookeeper_close() leaves unprocessed when a
    reply races the close (ZOOKEEPER-3868, open upstream; Debian 12 has 3.8.0).
    A block with any frame of ours (or of another library) is still a failure,
    so a leak of zklb's own, even one allocated in a ZooKeeper callback, counts."""
    if "ERROR: LeakSanitizer" not in report or "ERROR: AddressSanitizer" in report \
            or "runtime error: " in report:
        return False
    blocks = LEAK_BLOCK_RE.findall(report)
    if not blocks:
        return False
    for block in blocks:
        frames = FRAME_RE.findall(block)
        # frame 0 is the allocator's interceptor; every caller must be the library
        if len(frames) < 2 or not all("libzookeeper_mt.so" in f for f in frames[1:]):
            return False
    return True


class DnsServer:
    """A small DNS server on UDP for tests, answering the A records it is given.

    add(name, ip, delay) answers A queries for name with ip after delay seconds
    (each reply on a timer of its own, so a slow name holds nothing else up);
    AAAA queries for a known name get an empty answer; unknown names get
    NXDOMAIN. `queries` counts A queries per name. Binds port 53 (what
    resolv.conf can name; root only) on a random 127.53.x.y, so suites running
    side by side do not collide: write_resolv_conf() gives a file that points
    there, for Zklb(resolv_conf=...).
    """

    def __init__(self, host=None, port=53):
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        for _ in range(20):
            host = host or f"127.53.{random.randrange(256)}.{random.randrange(1, 255)}"
            try:
                self.sock.bind((host, port))
                break
            except OSError as e:
                if e.errno != errno.EADDRINUSE:
                    raise
                host = None
        else:
            raise OSError(errno.EADDRINUSE, "no free 127.53.x.y:53 in 20 tries")
        self.host, self.port = host, port
        self.sock.settimeout(0.1)
        self.records = {}
        self.queries = Counter()
        self._lock = threading.Lock()
        self._timers = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._serve, name="dns", daemon=True)
        self._thread.start()

    def add(self, name, ip, delay=0.0):
        with self._lock:
            self.records[name.lower().rstrip(".")] = (ip, delay)

    def write_resolv_conf(self, path):
        Path(path).write_text(f"nameserver {self.host}\noptions timeout:5 attempts:1\n")
        return path

    def _serve(self):
        while not self._stop.is_set():
            try:
                data, peer = self.sock.recvfrom(512)
            except socket.timeout:
                continue
            except OSError:
                return
            try:
                self._answer(data, peer)
            except (IndexError, ValueError):
                pass                               # not a query we understand: drop

    def _answer(self, q, peer):
        if len(q) < 12 or int.from_bytes(q[4:6], "big") != 1:
            return
        labels, i = [], 12
        while q[i]:
            labels.append(q[i + 1:i + 1 + q[i]].decode("ascii", "replace"))
            i += 1 + q[i]
        i += 1
        qtype = int.from_bytes(q[i:i + 2], "big")
        question = q[12:i + 4]
        name = ".".join(labels).lower()
        with self._lock:
            rec = self.records.get(name)
            if qtype == 1:
                self.queries[name] += 1
        rd = q[2] & 0x01
        if rec is None:
            flags, answers = bytes([0x84 | rd, 0x83]), b""          # NXDOMAIN
        else:
            flags, answers = bytes([0x84 | rd, 0x80]), b""
            if qtype == 1:
                answers = (b"\xc0\x0c" + (1).to_bytes(2, "big") + (1).to_bytes(2, "big")
                           + (60).to_bytes(4, "big") + (4).to_bytes(2, "big")
                           + socket.inet_aton(rec[0]))
        reply = (q[:2] + flags + (1).to_bytes(2, "big") + (1 if answers else 0).to_bytes(2, "big")
                 + bytes(4) + question + answers)
        delay = rec[1] if rec else 0.0
        if delay:
            t = threading.Timer(delay, self._send, (reply, peer))
            t.daemon = True
            self._timers.append(t)
            t.start()
        else:
            self._send(reply, peer)

    def _send(self, reply, peer):
        try:
            self.sock.sendto(reply, peer)
        except OSError:
            pass

    def stop(self):
        self._stop.set()
        for t in self._timers:
            t.cancel()
        self._thread.join(timeout=2)
        self.sock.close()


class ZklbMissing(AssertionError):
    pass


class UnixHTTPConnection(http.client.HTTPConnection):
    """http.client over a unix stream socket."""

    def __init__(self, path, timeout=5.0):
        super().__init__("localhost", timeout=timeout)
        self.unix_path = path

    def connect(self):
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        s.settimeout(self.timeout)
        s.connect(self.unix_path)
        self.sock = s


class Zklb:
    """zklb started from a config (dict or YAML text) in workdir.

    Output (stdout+stderr) goes to workdir/zklb.log. The process is stopped by
    its PID; cleanup() never leaves it running.
    """

    def __init__(self, config, workdir, *, admin=None, nofile=None, env=None,
                 args=None, binary=None, name="zklb", resolv_conf=None):
        self.workdir = Path(workdir)
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.name = name
        self.binary = Path(binary) if binary else zklb_binary()
        self.config_path = self.workdir / f"{name}.yaml"
        self.log_path = self.workdir / f"{name}.log"
        self.nofile = nofile
        self.resolv_conf = resolv_conf
        self.env = env or {}
        self.extra_args = list(args or [])
        self.proc = None
        self.returncode = None
        self.config = None
        self.write_config(config)
        self.admin = admin or self._admin_from_config()

    # -- config ---------------------------------------------------------------

    def write_config(self, config):
        """Write config (dict → YAML, or text as is) atomically to config_path."""
        self.config = config
        text = to_yaml(config) if isinstance(config, dict) else config
        tmp = self.config_path.with_suffix(".tmp")
        tmp.write_text(text)
        os.replace(tmp, self.config_path)

    def _admin_from_config(self):
        if isinstance(self.config, dict):
            listen = self.config.get("admin", {}).get("listen")
            return listen
        m = re.search(r"^admin:\s*\n(?:\s+#.*\n)*\s+listen:\s*[\"']?([^\"'\s#]+)",
                      self.config, re.M)
        return m.group(1) if m else None

    def listen(self, service):
        """(host, port) of a service's listener (config must be a dict)."""
        return split_addr(self.config["services"][service]["listen"])

    # -- process --------------------------------------------------------------

    def start(self, wait=True, timeout=15.0):
        if not self.binary.exists():
            raise ZklbMissing(
                f"zklb binary not found at {self.binary}; build it first "
                f"(tests/run builds build-ci; set ZKLB_BUILD to choose the build dir)")
        cmd = [str(self.binary), "-c", str(self.config_path)] + self.extra_args
        if self.nofile is not None:
            # prlimit sets the limit and execs zklb (same PID). A preexec_fn would
            # run Python in the child of a multi-threaded process: not safe.
            cmd = ["prlimit", f"--nofile={self.nofile}:{self.nofile}", "--"] + cmd
        if self.resolv_conf is not None:
            # A mount namespace of its own in which resolv.conf is ours (root only):
            # DNS for this zklb alone. unshare and sh exec, so the PID stays zklb's.
            cmd = ["unshare", "--mount", "sh", "-c",
                   'mount --bind "$0" /etc/resolv.conf && exec "$@"',
                   str(self.resolv_conf)] + cmd
        env = dict(os.environ)
        env.update(self.env)
        log = open(self.log_path, "ab")
        try:
            self.proc = subprocess.Popen(
                cmd, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                env=env, start_new_session=True)
            track(self.proc)
        finally:
            log.close()
        self.returncode = None
        if wait:
            self.wait_ready(timeout)
        return self

    @property
    def pid(self):
        return self.proc.pid if self.proc else None

    def running(self):
        return self.proc is not None and self.proc.poll() is None

    def wait_ready(self, timeout=15.0):
        """Wait until GET /healthz answers 200; fail early if the process exits."""
        if not self.admin:
            raise AssertionError("no admin.listen in the config: cannot tell when zklb is up")
        deadline = time.monotonic() + timeout
        while True:
            if not self.running():
                rc = self.proc.wait()
                raise AssertionError(f"zklb exited with {rc} during start-up\n"
                                     f"--- {self.log_path} ---\n{self.log_tail()}")
            try:
                status, _, _ = self.admin_get("/healthz", timeout=1.0)
                if status == 200:
                    return
            except OSError:
                pass
            if time.monotonic() > deadline:
                raise AssertionError(f"zklb not ready (GET /healthz) after {timeout}s\n"
                                     f"--- {self.log_path} ---\n{self.log_tail()}")
            time.sleep(0.05)

    def send_signal(self, sig):
        if self.running():
            os.kill(self.proc.pid, sig)

    def reload(self, config=None):
        """Optionally write a new config, then SIGHUP."""
        if config is not None:
            self.write_config(config)
        self.send_signal(signal.SIGHUP)

    def wait(self, timeout):
        """Wait for exit; return the exit code (negative: killed by that signal),
        or raise TimeoutError."""
        try:
            self.returncode = self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            raise TimeoutError(f"zklb (pid {self.pid}) still running after {timeout}s")
        return self.returncode

    def stop(self, sig=signal.SIGTERM, timeout=15.0):
        """Send sig and wait for the exit code. If it does not exit in time, it is
        killed and TimeoutError is raised."""
        if self.proc is None:
            return None
        if self.proc.poll() is not None:
            self.returncode = self.proc.returncode
            return self.returncode
        os.kill(self.proc.pid, sig)
        try:
            return self.wait(timeout)
        except TimeoutError:
            self.kill()
            raise

    def kill(self):
        if self.proc is None:
            return
        if self.proc.poll() is None:
            try:
                os.kill(self.proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            self.proc.wait(10)
        # Children it started (on_change commands) share its process group.
        try:
            os.killpg(self.proc.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
        self.returncode = self.proc.returncode

    def cleanup(self):
        """Teardown: SIGTERM, then SIGKILL; never raises."""
        try:
            if self.running():
                self.stop(signal.SIGTERM, timeout=10)
        except Exception:  # noqa: BLE001
            pass
        self.kill()

    # -- log ------------------------------------------------------------------

    def log(self):
        try:
            return self.log_path.read_text(errors="replace")
        except FileNotFoundError:
            return ""

    def log_mark(self):
        """An offset into the log; pass as since= to look only at later lines."""
        try:
            return self.log_path.stat().st_size
        except FileNotFoundError:
            return 0

    def log_tail(self, lines=60):
        return "\n".join(self.log().splitlines()[-lines:])

    def wait_for_log(self, pattern, timeout=5.0, since=0):
        """Wait for a regex (re.M) to match the log after offset `since`."""
        rx = re.compile(pattern, re.M)
        deadline = time.monotonic() + timeout
        while True:
            with open(self.log_path, "rb") as f:
                f.seek(since)
                m = rx.search(f.read().decode(errors="replace"))
            if m:
                return m
            if time.monotonic() > deadline:
                raise AssertionError(f"log line /{pattern}/ not seen within {timeout}s\n"
                                     f"--- {self.log_path} ---\n{self.log_tail()}")
            time.sleep(0.05)

    def sanitizer_report(self):
        """The sanitizer's report in the log, or None."""
        text = self.log()
        m = SANITIZER_RE.search(text)
        if not m:
            return None
        start = text.rfind("\n", 0, max(0, m.start() - 200)) + 1
        if upstream_zookeeper_leak_only(text[m.start():]):
            return None
        return text[start:start + 6000]

    # -- admin API ------------------------------------------------------------

    def admin_get(self, path, timeout=5.0):
        """→ (status, headers dict (lower-case names), body bytes)."""
        return self.admin_request("GET", path, timeout=timeout)

    def admin_request(self, method, path, timeout=5.0):
        """One request to the admin API, on TCP or its unix: socket →
        (status, headers dict (lower-case names), body bytes)."""
        if self.admin.startswith("unix:"):
            c = UnixHTTPConnection(self.admin[5:], timeout)
        else:
            host, port = split_addr(self.admin)
            c = http.client.HTTPConnection(host, port, timeout=timeout)
        try:
            c.request(method, path)
            r = c.getresponse()
            body = r.read()
            return r.status, {k.lower(): v for k, v in r.getheaders()}, body
        finally:
            c.close()

    def admin_json(self, path):
        status, _, body = self.admin_get(path)
        assert status == 200, f"GET {path} → {status}: {body[:500]!r}"
        return json.loads(body)

    def services(self):
        """GET /services normalised to {name: service}."""
        return services_of(self.admin_json("/services"))

    def metrics(self):
        status, _, body = self.admin_get("/metrics")
        assert status == 200, f"GET /metrics → {status}"
        return parse_metrics(body.decode())

    def backend_metric(self, what, service, backend):
        """One per-backend figure: what is a key of METRIC ('active', 'total', ...)."""
        return self.metrics().value(METRIC[what], **backend_labels(service, backend))

    def instances(self, service):
        """GET /services → {'host:port': instance object} of one service."""
        return {instance_address(i): i for i in instances_of(self.services()[service])}


def run_zklb(args, timeout=10.0, binary=None, env=None):
    """Run the zklb binary to completion (check, --version, ...) → CompletedProcess
    with text stdout/stderr."""
    b = Path(binary) if binary else zklb_binary()
    if not b.exists():
        raise ZklbMissing(f"zklb binary not found at {b}; build it first "
                          f"(tests/run builds build-ci; set ZKLB_BUILD to choose)")
    e = dict(os.environ)
    e.update(env or {})
    return subprocess.run([str(b)] + list(args), capture_output=True, text=True,
                          timeout=timeout, stdin=subprocess.DEVNULL, env=e)


# ---------------------------------------------------------------------------
# ZooKeeper
# ---------------------------------------------------------------------------

ZK_CLASSPATH = ["/etc/zookeeper/conf", "/usr/share/java/zookeeper.jar",
                # Optional: a log4j binding so the server writes DIR/zookeeper.log.
                "/usr/share/java/slf4j-log4j12.jar", "/usr/share/java/log4j-1.2.jar"]
# What NettyServerCnxnFactory (secureClientPort) needs beyond zookeeper.jar (Debian's libnetty-java).
ZK_NETTY = [f"/usr/share/java/netty-{m}.jar" for m in
            ("buffer", "codec", "common", "handler", "resolver", "transport",
             "transport-native-epoll", "transport-native-unix-common")]


def load_bench_script(name):
    """A bench/ script without a .py suffix (bench/zk-load...) as a module, so that a
    test runs the benchmark's own code in a small configuration."""
    import importlib.machinery
    import importlib.util

    mod_name = name.replace("-", "_")
    loader = importlib.machinery.SourceFileLoader(mod_name, str(ROOT / "bench" / name))
    spec = importlib.util.spec_from_loader(mod_name, loader)
    mod = importlib.util.module_from_spec(spec)
    loader.exec_module(mod)
    return mod


def four_letter(hostport, cmd, timeout=1.0):
    """Send a ZooKeeper four-letter command; return the answer text ('' on error)."""
    try:
        with socket.create_connection(split_addr(hostport), timeout=timeout) as s:
            s.settimeout(timeout)
            s.sendall(cmd.encode())
            out = b""
            while True:
                chunk = s.recv(4096)
                if not chunk:
                    break
                out += chunk
            return out.decode(errors="replace")
    except OSError:
        return ""


class ZooKeeper:
    """One ZooKeeper server (standalone, or a member of an Ensemble)."""

    def __init__(self, workdir, port=None, myid=None, peers=None, extra=None, jvm_props=None,
                 tls=None):
        """extra: more zoo.cfg lines; jvm_props: server settings that are JVM
        system properties only (jute.maxbuffer, znode.container.checkIntervalMs);
        tls: (keystore, truststore, client_auth) — PEM files (the keystore holds the
        certificate and its key) and "none"/"need": also serve TLS on
        self.secure_port (Netty; `secure_hosts`)."""
        self.dir = Path(workdir)
        self.jvm_props = dict(jvm_props or {})
        self.data = self.dir / "data"
        self.data.mkdir(parents=True, exist_ok=True)
        self.port = port or free_port()
        self.myid = myid
        self.proc = None
        self.secure_port = free_port() if tls else None
        cfg = {
            "tickTime": 500,
            "initLimit": 20,
            "syncLimit": 10,
            "dataDir": str(self.data),
            "clientPort": self.port,
            "clientPortAddress": LOOPBACK,
            "admin.enableServer": "false",
            "4lw.commands.whitelist": "*",
            "maxClientCnxns": 0,
            "forceSync": "no",
            "preAllocSize": 1024,
            "autopurge.purgeInterval": 0,
        }
        if peers:
            cfg["standaloneEnabled"] = "false"
            cfg["reconfigEnabled"] = "false"
            # peers: {sid: (port, election port[, "observer"])}
            for sid, ports in peers.items():
                role = f":{ports[2]}" if len(ports) > 2 else ""
                cfg[f"server.{sid}"] = f"{LOOPBACK}:{ports[0]}:{ports[1]}{role}"
            if len(peers[myid]) > 2:
                cfg["peerType"] = "observer"
            (self.data / "myid").write_text(f"{myid}\n")
        if tls:
            keystore, truststore, client_auth = tls
            cfg.update({
                "secureClientPort": self.secure_port,
                "secureClientPortAddress": LOOPBACK,
                "serverCnxnFactory": "org.apache.zookeeper.server.NettyServerCnxnFactory",
                "ssl.keyStore.location": keystore, "ssl.keyStore.type": "PEM",
                "ssl.trustStore.location": truststore, "ssl.trustStore.type": "PEM",
                "ssl.clientAuth": client_auth,
            })
        cfg.update(extra or {})
        self.cfg_path = self.dir / "zoo.cfg"
        self.cfg_path.write_text("".join(f"{k}={v}\n" for k, v in cfg.items()))

    @property
    def hosts(self):
        return f"{LOOPBACK}:{self.port}"

    @property
    def secure_hosts(self):
        return f"{LOOPBACK}:{self.secure_port}"

    def start(self, wait=True, timeout=30.0):
        cp = ":".join(p for p in ZK_CLASSPATH + (ZK_NETTY if self.secure_port else [])
                      if os.path.exists(p))
        cmd = ["java", "-Xmx256m", "-XX:+UseSerialGC", "-XX:TieredStopAtLevel=1",
               "-Djava.net.preferIPv4Stack=true",
               f"-Dzookeeper.log.dir={self.dir}",
               "-Dzookeeper.root.logger=INFO,ROLLINGFILE",
               "-Dzookeeper.admin.enableServer=false",
               *(f"-D{k}={v}" for k, v in self.jvm_props.items()),
               "-cp", cp, "org.apache.zookeeper.server.quorum.QuorumPeerMain",
               str(self.cfg_path)]
        with open(self.dir / "zookeeper.out", "ab") as out:
            self.proc = track(subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=out,
                                               stderr=subprocess.STDOUT,
                                               start_new_session=True))
        if wait:
            self.wait_ready(timeout)
        return self

    def running(self):
        return self.proc is not None and self.proc.poll() is None

    def srvr(self):
        return four_letter(self.hosts, "srvr")

    def mode(self):
        """'standalone', 'leader', 'follower', or None when not serving."""
        m = re.search(r"^Mode: (\w+)", self.srvr(), re.M)
        return m.group(1) if m else None

    def wait_ready(self, timeout=30.0, modes=("standalone", "leader", "follower", "observer")):
        deadline = time.monotonic() + timeout
        while True:
            if not self.running():
                raise AssertionError(f"ZooKeeper exited ({self.proc.returncode}) during "
                                     f"start-up; see {self.dir}")
            if self.mode() in modes:
                return
            if time.monotonic() > deadline:
                raise AssertionError(f"ZooKeeper on {self.hosts} not ready after {timeout}s;"
                                     f" see {self.dir}")
            time.sleep(0.1)

    def stop(self, timeout=10.0):
        """SIGTERM by PID, SIGKILL if it lingers."""
        if not self.running():
            return
        os.kill(self.proc.pid, signal.SIGTERM)
        try:
            self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.kill()

    def kill(self):
        if self.running():
            os.kill(self.proc.pid, signal.SIGKILL)
            self.proc.wait(10)

    def restart(self, wait=True, timeout=30.0):
        """Stop and start again with the same port and data."""
        self.stop()
        return self.start(wait=wait, timeout=timeout)

    def cleanup(self):
        try:
            self.stop(timeout=5)
        finally:
            self.kill()


class Ensemble:
    """Three (or `size`) ZooKeeper servers on loopback forming one quorum, and
    `observers` more that follow it without voting (peerType=observer): they
    serve reads themselves and forward writes to the leader."""

    def __init__(self, workdir, size=3, observers=0):
        self.dir = Path(workdir)
        peers = {i: (free_port(), free_port()) for i in range(1, size + 1)}
        for i in range(size + 1, size + observers + 1):
            peers[i] = (free_port(), free_port(), "observer")
        self.nodes = [ZooKeeper(self.dir / f"zk{i}", myid=i, peers=peers)
                      for i in range(1, size + observers + 1)]
        self.voters = self.nodes[:size]
        self.observers = self.nodes[size:]

    @property
    def hosts(self):
        """The voters' connect string."""
        return ",".join(n.hosts for n in self.voters)

    @property
    def observer_hosts(self):
        """The observers' connect string (what a zklb near them would list)."""
        return ",".join(n.hosts for n in self.observers)

    def start(self, timeout=60.0):
        for n in self.nodes:
            n.start(wait=False)
        self.wait_ready(timeout)
        return self

    def wait_ready(self, timeout=60.0):
        """Every running node serves as leader or follower, with exactly one leader."""
        def ok():
            voters = [n.mode() for n in self.voters if n.running()]
            watchers = [n.mode() for n in self.observers if n.running()]
            return (voters and all(m in ("leader", "follower") for m in voters)
                    and voters.count("leader") == 1
                    and all(m == "observer" for m in watchers))
        wait_until(ok, timeout, interval=0.2, what="ZooKeeper ensemble quorum")

    def leader(self):
        for n in self.nodes:
            if n.running() and n.mode() == "leader":
                return n
        return None

    def kill_leader(self):
        """SIGKILL the current leader; return it (restart it with .start())."""
        ld = wait_until(self.leader, 30, interval=0.1, what="a ZooKeeper leader")
        ld.kill()
        return ld

    def stop(self):
        for n in self.nodes:
            n.stop()

    def cleanup(self):
        for n in self.nodes:
            n.cleanup()


# ---------------------------------------------------------------------------
# Real protocol servers as backends (Nginx HTTP, redis-server, memcached) and a
# tiny threaded HTTP/1.1 server whose answers can be delayed (used by
# test_pool.py). Each one counts the connections it accepted, so that a test
# can compare upstream accepts with client connections; the counts leave out
# the harness's own status queries. Loopback only; stopped by PID.
# ---------------------------------------------------------------------------


def port_listening(port, host=LOOPBACK):
    """True once something listens on host:port (read from /proc/net/tcp, so
    that waiting for a server does not add a connection to its counters)."""
    want = f"{socket.htonl(int.from_bytes(socket.inet_aton(host), 'big')):08X}:{port:04X}"
    try:
        with open("/proc/net/tcp") as f:
            next(f)
            for line in f:
                parts = line.split()
                if parts[1] == want and parts[3] == "0A":
                    return True
    except OSError:
        pass
    return False


class SockReader:
    """Buffered reads from a socket: lines, exact byte counts, HTTP responses,
    RESP replies. Raises ConnectionError on EOF in the middle of a read."""

    def __init__(self, sock):
        self.sock = sock
        self.buf = bytearray()

    def _fill(self):
        chunk = self.sock.recv(1 << 16)
        if not chunk:
            raise ConnectionError(f"EOF after {len(self.buf)} buffered bytes: "
                                  f"{bytes(self.buf[:200])!r}")
        self.buf += chunk

    def line(self, limit=1 << 16):
        while True:
            i = self.buf.find(b"\n")
            if i >= 0:
                out = bytes(self.buf[:i + 1])
                del self.buf[:i + 1]
                return out
            if len(self.buf) > limit:
                raise AssertionError(f"line longer than {limit}: {bytes(self.buf[:200])!r}")
            self._fill()

    def exactly(self, n):
        while len(self.buf) < n:
            self._fill()
        out = bytes(self.buf[:n])
        del self.buf[:n]
        return out

    def extra(self):
        """Bytes already here beyond what was read (buffered or queued in the
        kernel), without waiting: b'' when the peer sent nothing more yet."""
        out = bytes(self.buf)
        self.buf.clear()
        timeout = self.sock.gettimeout()
        self.sock.setblocking(False)  # with a timeout, Python would poll and wait
        try:
            out += self.sock.recv(1 << 16, socket.MSG_PEEK)
        except (BlockingIOError, InterruptedError):
            pass
        finally:
            self.sock.settimeout(timeout)
        return out

    def http_response(self):
        """One HTTP/1.1 response read by Content-Length → (status, headers, body);
        header names lower-case."""
        status_line = self.line()
        parts = status_line.split(None, 2)
        if len(parts) < 2 or not parts[0].startswith(b"HTTP/1."):
            raise AssertionError(f"not an HTTP status line: {status_line!r}")
        headers = {}
        while True:
            h = self.line()
            if h in (b"\r\n", b"\n"):
                break
            k, _, v = h.decode("latin-1").partition(":")
            headers[k.strip().lower()] = v.strip()
        n = int(headers.get("content-length", "0"))
        return int(parts[1]), headers, self.exactly(n)

    def resp(self):
        """One RESP2 reply: str for +, Exception-like ('ERR', text) tuple for -,
        int for :, bytes or None for $, list or None for *."""
        line = self.line()
        t, rest = line[:1], line[1:].rstrip(b"\r\n")
        if t == b"+":
            return rest.decode()
        if t == b"-":
            return ("ERR", rest.decode())
        if t == b":":
            return int(rest)
        if t == b"$":
            n = int(rest)
            if n < 0:
                return None
            data = self.exactly(n + 2)
            return data[:-2]
        if t == b"*":
            n = int(rest)
            return None if n < 0 else [self.resp() for _ in range(n)]
        raise AssertionError(f"not a RESP reply: {line!r}")


def http_request(path, host="zklb-test", close=False):
    """A GET request for path, HTTP/1.1 keep-alive unless close."""
    conn = "Connection: close\r\n" if close else ""
    return f"GET {path} HTTP/1.1\r\nHost: {host}\r\n{conn}\r\n".encode()


def resp_command(*args):
    """A RESP2 command (array of bulk strings)."""
    out = [b"*%d\r\n" % len(args)]
    for a in args:
        a = a if isinstance(a, bytes) else str(a).encode()
        out.append(b"$%d\r\n%s\r\n" % (len(a), a))
    return b"".join(out)


class ServerProcess:
    """A real server program on a loopback port, started in its own session and
    stopped by PID. Subclasses give argv() and stats()."""

    kind = "server"
    binary = None

    def __init__(self, workdir, port=None, name=None):
        self.dir = Path(workdir)
        self.dir.mkdir(parents=True, exist_ok=True)
        self.host = LOOPBACK
        self.port = port or free_port()
        self.name = name or self.kind
        self.proc = None
        self.out_path = self.dir / f"{self.name}.out"
        self._own_queries = 0

    @property
    def address(self):
        return f"{self.host}:{self.port}"

    @property
    def addr(self):
        return (self.host, self.port)

    def __repr__(self):
        return f"<{type(self).__name__} {self.address}>"

    @classmethod
    def available(cls):
        return cls.binary is not None and os.path.exists(cls.binary)

    def argv(self):
        raise NotImplementedError

    def start(self, timeout=10.0):
        if not self.available():
            raise RuntimeError(f"{self.binary} not installed")
        with open(self.out_path, "ab") as out:
            self.proc = subprocess.Popen(self.argv(), stdin=subprocess.DEVNULL, stdout=out,
                                         stderr=subprocess.STDOUT, start_new_session=True)
        deadline = time.monotonic() + timeout
        while not port_listening(self.port, self.host):
            if self.proc.poll() is not None:
                raise AssertionError(f"{self.name} exited with {self.proc.returncode} at "
                                     f"start-up:\n{self.out_path.read_text(errors='replace')[-3000:]}")
            if time.monotonic() > deadline:
                self.stop()
                raise AssertionError(f"{self.name} not listening on {self.address} "
                                     f"after {timeout}s")
            time.sleep(0.02)
        return self

    def running(self):
        return self.proc is not None and self.proc.poll() is None

    def stop(self, timeout=5.0):
        if self.proc is None:
            return
        if self.proc.poll() is None:
            try:
                os.kill(self.proc.pid, signal.SIGTERM)
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                try:
                    os.killpg(self.proc.pid, signal.SIGKILL)
                except (ProcessLookupError, PermissionError):
                    pass
                self.proc.wait(5)
            except ProcessLookupError:
                pass
        self.proc = None

    def _connect(self, timeout):
        """A connection for the harness's own queries (a TLS server wraps it)."""
        return socket.create_connection(self.addr, timeout=timeout)

    def _query(self, payload, until, timeout=5.0):
        """Send payload on a fresh connection, read until `until` ends the answer."""
        self._own_queries += 1
        with self._connect(timeout) as s:
            s.settimeout(timeout)
            s.sendall(payload)
            out = b""
            while not until(out):
                chunk = s.recv(65536)
                if not chunk:
                    break
                out += chunk
        return out

    @property
    def accepts(self):
        """Connections accepted since start, the harness's own queries excluded."""
        return self.stats()["accepts"]

    @property
    def active(self):
        """Connections open now, the harness's own query excluded."""
        return self.stats()["active"]


class NginxHTTP(ServerProcess):
    """Nginx as an HTTP/1.1 keep-alive backend (one worker, access log with
    $connection). Locations:
        /r/<id>     200, body "r<id>\\n" (return directive, Content-Length set)
        /big/<id>   200, the file big.bin (big_size pseudo-random bytes), with
                    header X-Client: <id>
        /stub       stub_status (used by stats(); not logged)
    """

    kind = "nginx"
    binary = shutil.which("nginx") or "/usr/sbin/nginx"

    def __init__(self, workdir, port=None, keepalive_timeout="75s", keepalive_requests=1000000,
                 big_size=1 << 20, name=None):
        super().__init__(workdir, port, name)
        self.keepalive_timeout = keepalive_timeout
        self.keepalive_requests = keepalive_requests
        (self.dir / "www").mkdir(exist_ok=True)
        (self.dir / "tmp").mkdir(exist_ok=True)
        self.big = random_bytes(big_size, seed=big_size)
        self.big_sha = sha256(self.big)
        (self.dir / "www" / "big.bin").write_bytes(self.big)
        self.access_log = self.dir / "access.log"
        self.conf = self.dir / "nginx.conf"
        d = self.dir
        user = "user root;\n" if os.geteuid() == 0 else ""
        self.conf.write_text(f"""daemon off;
master_process on;
{user}worker_processes 1;
pid {d}/nginx.pid;
error_log {d}/error.log warn;
events {{ worker_connections 8192; }}
http {{
    log_format conn '$connection $connection_requests $request_uri $status';
    access_log {self.access_log} conn;
    keepalive_requests {keepalive_requests};
    keepalive_timeout {keepalive_timeout};
    client_body_temp_path {d}/tmp;
    proxy_temp_path {d}/tmp;
    fastcgi_temp_path {d}/tmp;
    uwsgi_temp_path {d}/tmp;
    scgi_temp_path {d}/tmp;
    default_type text/plain;
    server {{
        listen {self.host}:{self.port} backlog=4096;
        root {d}/www;
        location ~ ^/r/(?<cid>[0-9]+)$ {{ return 200 "r$cid\\n"; }}
        location ~ ^/big/(?<cid>[0-9]+)$ {{
            add_header X-Client $cid always;
            try_files /big.bin =404;
        }}
        location = /stub {{ stub_status; access_log off; }}
    }}
}}
""")

    def argv(self):
        return [self.binary, "-p", str(self.dir), "-c", str(self.conf),
                "-e", str(self.dir / "error.log")]

    def stats(self):
        """stub_status → {accepts, handled, requests, active, waiting}, without the
        connections and requests of the harness's own stub queries."""
        text = self._query(b"GET /stub HTTP/1.1\r\nHost: stub\r\nConnection: close\r\n\r\n",
                           lambda b: False).decode()
        m = re.search(r"Active connections:\s*(\d+).*?\n\s*(\d+)\s+(\d+)\s+(\d+).*?"
                      r"Waiting:\s*(\d+)", text, re.S)
        if not m:
            raise AssertionError(f"bad stub_status answer: {text!r}")
        active, accepts, handled, requests, waiting = map(int, m.groups())
        q = self._own_queries
        return {"accepts": accepts - q, "handled": handled - q, "requests": requests - q,
                "active": active - 1, "waiting": waiting}

    def log_entries(self):
        """The access log → [(connection serial, request number on it, uri, status)]."""
        out = []
        try:
            text = self.access_log.read_text()
        except FileNotFoundError:
            return out
        for line in text.splitlines():
            p = line.split()
            if len(p) == 4:
                out.append((int(p[0]), int(p[1]), p[2], int(p[3])))
        return out


class RedisServer(ServerProcess):
    """redis-server without persistence."""

    kind = "redis"
    binary = shutil.which("redis-server") or "/usr/bin/redis-server"

    def argv(self):
        return [self.binary, "--port", str(self.port), "--bind", self.host,
                "--save", "", "--appendonly", "no", "--dir", str(self.dir),
                "--protected-mode", "no", "--daemonize", "no", "--maxclients", "10000",
                "--logfile", str(self.dir / "redis.log")]

    def info(self):
        raw = self._query(resp_command("INFO"), lambda b: b.count(b"\r\n") >= 2 and
                          len(b) >= int(b[1:b.index(b"\r\n")]) + b.index(b"\r\n") + 4)
        out = {}
        for line in raw.decode().splitlines()[1:]:
            k, sep, v = line.partition(":")
            if sep:
                out[k] = v.strip()
        return out

    def stats(self):
        i = self.info()
        return {"accepts": int(i["total_connections_received"]) - self._own_queries,
                "active": int(i["connected_clients"]) - 1}


class Memcached(ServerProcess):
    """memcached, text protocol, one thread."""

    kind = "memcached"
    binary = shutil.which("memcached") or "/usr/bin/memcached"

    def argv(self):
        user = ["-u", "root"] if os.geteuid() == 0 else []
        return [self.binary] + user + ["-l", self.host, "-p", str(self.port), "-U", "0",
                                       "-t", "1", "-c", "8192", "-m", "64"]

    def start(self, timeout=10.0):
        super().start(timeout)
        self.stats()  # sets the baseline of the counters
        return self

    def stats(self):
        raw = self._query(b"stats\r\n", lambda b: b.endswith(b"END\r\n")).decode()
        st = {}
        for line in raw.splitlines():
            p = line.split()
            if len(p) == 3 and p[0] == "STAT":
                st[p[1]] = p[2]
        if not hasattr(self, "_base"):
            # total_connections and curr_connections include the listening sockets.
            self._base = int(st["total_connections"]) - self._own_queries
            self._base_curr = int(st["curr_connections"]) - 1
        return {"accepts": int(st["total_connections"]) - self._own_queries - self._base,
                "active": int(st["curr_connections"]) - 1 - self._base_curr}


class TinyHTTP:
    """A small HTTP/1.1 keep-alive server, one thread per connection:
        GET /r/<id>            → 200 "r<id>\\n"
        GET /slow/<ms>/<id>    → the same after <ms> milliseconds
    Counts accepts, open connections (active) and closes, readable from any
    thread; requests (paths, in arrival order) for inspection."""

    def __init__(self, host=LOOPBACK, max_conns=256):
        self.host = host
        self.max_conns = max_conns
        self.accepts = 0
        self.closes = 0
        self.requests = []
        self._conns = set()
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._ls = socket.socket(socket.AF_INET)
        self._ls.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._ls.bind((host, 0))
        self.port = self._ls.getsockname()[1]
        self.name = f"tinyhttp:{self.port}"
        self._threads = []

    @property
    def address(self):
        return f"{self.host}:{self.port}"

    @property
    def active(self):
        with self._lock:
            return len(self._conns)

    def start(self):
        self._ls.listen(128)
        self._ls.settimeout(0.2)
        t = threading.Thread(target=self._accept_loop, name=self.name, daemon=True)
        t.start()
        self._threads.append(t)
        return self

    def _accept_loop(self):
        while not self._stop.is_set():
            try:
                s, _ = self._ls.accept()
            except (socket.timeout, TimeoutError):
                continue
            except OSError:
                return
            with self._lock:
                self.accepts += 1
                if len(self._conns) >= self.max_conns:
                    s.close()
                    self.closes += 1
                    continue
                self._conns.add(s)
            t = threading.Thread(target=self._serve, args=(s,), daemon=True)
            t.start()

    def _serve(self, s):
        s.settimeout(0.2)
        buf = b""
        try:
            while not self._stop.is_set():
                i = buf.find(b"\r\n\r\n")
                if i < 0:
                    try:
                        chunk = s.recv(65536)
                    except (socket.timeout, TimeoutError):
                        continue
                    if not chunk:
                        return
                    buf += chunk
                    continue
                head, buf = buf[:i], buf[i + 4:]
                path = head.split(b"\r\n", 1)[0].split()[1].decode()
                with self._lock:
                    self.requests.append(path)
                m = re.fullmatch(r"/slow/(\d+)/(\d+)", path)
                if m:
                    self._stop.wait(int(m.group(1)) / 1000.0)
                    body = f"r{m.group(2)}\n".encode()
                else:
                    m = re.fullmatch(r"/r/(\d+)", path)
                    body = f"r{m.group(1)}\n".encode() if m else b"not found\n"
                s.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n"
                          b"Content-Type: text/plain\r\n\r\n%s" % (len(body), body))
        except OSError:
            pass
        finally:
            with self._lock:
                self._conns.discard(s)
                self.closes += 1
            s.close()

    def stop(self):
        self._stop.set()
        self._ls.close()
        with self._lock:
            conns = list(self._conns)
        for s in conns:
            try:
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
        for t in self._threads:
            t.join(2)
