"""Routing beyond least-connections (issue 14), against real peers on loopback.

  * redis_role: a static set of two real redis-server processes, a password
    (AUTH from a 0600 file); the check passes only on the primary, so routing
    follows the primary when REPLICAOF swaps the roles.
  * sentinel discovery: a real primary and replica and three real
    redis-sentinel processes; `SENTINEL failover` under steady client writes
    through zklb. New connections reach the new primary within a second of
    +switch-master; connections left on the demoted primary are closed after
    close_grace. The switch time and the failed writes are printed (-s).
  * zones: instances registered in ZooKeeper (Curator payload {"zone": ...})
    in two zones; traffic stays in the local zone, spills in proportion to
    what the zone lacks below min_healthy_percent when its instances are
    stopped, and comes back when they return.
  * max_connections_per_instance: with every algorithm, no instance ever
    holds more than the limit; the next client is closed as instance_limit
    (no_backend before issue 14's end reasons) and counted; a freed slot is used again.
  * proxy_protocol v2: a backend that parses the header byte by byte sees
    the client's address and the one it connected to (TCP over IPv4, over
    IPv6 on ::1), and LOCAL/UNSPEC for a unix-socket client; `zklb check`
    refuses it with pooling.
  * mysql_primary: two real MariaDB servers (mariadb-install-db into the
    test's directory, a user with a password); the check logs in and routes
    to the one whose @@global.read_only is 0, and follows when it flips.
"""

import json
import os
import subprocess
import shutil
import socket
import threading
import time

import pytest

from harness import (RedisServer, ServerProcess, close_all, closed_within, connect,
                     free_addr, free_port, hold, resp_command, run_zklb, static_service, tags,
                     to_yaml, wait_until, zklb_config)

SVC = "cache"
PASSWORD = "s3cret pass"


# ---------------------------------------------------------------------------
# A minimal RESP client: enough to drive real servers and read their answers.
# ---------------------------------------------------------------------------


class Resp:
    """One connection speaking RESP2; read() parses one reply (bounded waits)."""

    def __init__(self, addr, timeout=2.0):
        host, port = addr if isinstance(addr, tuple) else addr.rsplit(":", 1)
        self.sock = socket.create_connection((host, int(port)), timeout=timeout)
        self.buf = b""

    def close(self):
        self.sock.close()

    def _line(self):
        while b"\r\n" not in self.buf:
            chunk = self.sock.recv(65536)
            if not chunk:
                raise ConnectionError("closed")
            self.buf += chunk
        line, _, self.buf = self.buf.partition(b"\r\n")
        return line

    def _exact(self, n):
        while len(self.buf) < n + 2:
            chunk = self.sock.recv(65536)
            if not chunk:
                raise ConnectionError("closed")
            self.buf += chunk
        out, self.buf = self.buf[:n], self.buf[n + 2:]
        return out

    def read(self):
        line = self._line()
        kind, rest = line[:1], line[1:]
        if kind == b"+":
            return rest.decode()
        if kind == b"-":
            return RuntimeError(rest.decode())
        if kind == b":":
            return int(rest)
        if kind == b"$":
            n = int(rest)
            return None if n < 0 else self._exact(n).decode(errors="replace")
        if kind == b"*":
            n = int(rest)
            return None if n < 0 else [self.read() for _ in range(n)]
        raise AssertionError(f"bad RESP line {line!r}")

    def call(self, *args):
        self.sock.sendall(resp_command(*args))
        return self.read()


def redis_call(addr, *args, password=None):
    c = Resp(addr)
    try:
        if password is not None:
            assert c.call("AUTH", password) == "OK"
        return c.call(*args)
    finally:
        c.close()


def served_port(addr, password):
    """The port of the redis-server that answers a new connection through zklb."""
    got = redis_call(addr, "CONFIG", "GET", "port", password=password)
    assert isinstance(got, list) and got[0] == "port", got
    return int(got[1])


@pytest.fixture
def redis(tmp_path):
    """redis(name, password=PASSWORD) → a started RedisServer, stopped at teardown."""
    made = []

    def make(name, password=PASSWORD):
        if not RedisServer.available():
            pytest.fail(f"{RedisServer.binary} is not installed (Debian: redis-server)")
        s = RedisServer(tmp_path / name, name=name).start()
        made.append(s)
        if password is not None:
            redis_call(s.addr, "CONFIG", "SET", "masterauth", password)
            redis_call(s.addr, "CONFIG", "SET", "requirepass", password)
            s._own_queries += 2
        return s

    yield make
    for s in made:
        s.stop()


def password_file(tmp_path, text=PASSWORD + "\n", name="redis.pw"):
    p = tmp_path / name
    p.write_text(text)
    os.chmod(p, 0o600)
    return str(p)


def states(lb):
    return {a: i["state"] for a, i in lb.instances(SVC).items()}


# ---------------------------------------------------------------------------
# redis_role
# ---------------------------------------------------------------------------


def test_redis_role_routes_to_the_primary_and_follows_replicaof(redis, zklb, tmp_path):
    r1, r2 = redis("r1"), redis("r2")
    redis_call(r2.addr, "REPLICAOF", r1.host, r1.port, password=PASSWORD)
    lb = zklb(services={SVC: static_service([r1, r2], balance="round_robin", health={
        "check": {"type": "redis_role", "password_file": password_file(tmp_path),
                  "interval": "100ms", "timeout": "500ms", "rise": 1, "fall": 1}})})
    addr = lb.listen(SVC)
    wait_until(lambda: states(lb) == {r1.address: "healthy", r2.address: "checking"}, 5,
               what=f"r1 healthy, r2 checking (states: {states(lb)})")
    assert {served_port(addr, PASSWORD) for _ in range(10)} == {r1.port}

    # Swap: r2 becomes the primary, r1 its replica.
    mark = lb.log_mark()
    redis_call(r2.addr, "REPLICAOF", "NO", "ONE", password=PASSWORD)
    redis_call(r1.addr, "REPLICAOF", r2.host, r2.port, password=PASSWORD)
    wait_until(lambda: states(lb) == {r1.address: "checking", r2.address: "healthy"}, 5,
               what=f"r1 checking, r2 healthy (states: {states(lb)})")
    lb.wait_for_log(rf"be={r1.address} check DOWN: role slave", since=mark)
    assert {served_port(addr, PASSWORD) for _ in range(10)} == {r2.port}
    assert lb.metrics().value("zklb_service_check_failures_total", service=SVC) >= 1


def test_redis_role_replica_and_wrong_password(redis, zklb, tmp_path):
    """role: replica routes to the replica only; a wrong password fails every check
    with the server's own refusal in the log."""
    r1, r2 = redis("r1"), redis("r2")
    redis_call(r2.addr, "REPLICAOF", r1.host, r1.port, password=PASSWORD)
    good = password_file(tmp_path)
    lb = zklb(services={SVC: static_service([r1, r2], health={
        "check": {"type": "redis_role", "role": "replica", "password_file": good,
                  "interval": "100ms", "timeout": "500ms", "rise": 1, "fall": 1}})})
    addr = lb.listen(SVC)
    wait_until(lambda: states(lb) == {r1.address: "checking", r2.address: "healthy"}, 5,
               what=f"r1 checking, r2 healthy (states: {states(lb)})")
    assert {served_port(addr, PASSWORD) for _ in range(6)} == {r2.port}

    bad = tmp_path / "bad.pw"
    bad.write_text("wrong\n")
    os.chmod(bad, 0o600)
    mark = lb.log_mark()
    cfg = dict(lb.config)
    cfg["services"][SVC]["health"]["check"]["password_file"] = str(bad)
    lb.reload(cfg)
    lb.wait_for_log(rf"be={r2.address} check DOWN: auth refused: WRONGPASS", since=mark)


# ---------------------------------------------------------------------------
# sentinel discovery
# ---------------------------------------------------------------------------


MASTER = "mymaster"


class RedisSentinel(ServerProcess):
    """redis-sentinel (Debian's) monitoring one master on loopback. It rewrites
    its config file, so the file lives in its own directory."""

    kind = "sentinel"
    binary = shutil.which("redis-sentinel") or "/usr/bin/redis-sentinel"

    def __init__(self, workdir, master, name=None):
        super().__init__(workdir, name=name)
        self.conf = self.dir / "sentinel.conf"
        self.conf.write_text(
            f"port {self.port}\nbind {self.host}\ndaemonize no\ndir {self.dir}\n"
            f"logfile {self.dir / 'sentinel.log'}\n"
            f"sentinel monitor {MASTER} {master.host} {master.port} 2\n"
            f"sentinel down-after-milliseconds {MASTER} 1000\n"
            f"sentinel failover-timeout {MASTER} 10000\n"
            f"sentinel parallel-syncs {MASTER} 1\n")

    def argv(self):
        return [self.binary, str(self.conf)]

    def stats(self):
        return {"accepts": 0, "active": 0}


@pytest.fixture
def sentinels(tmp_path):
    """sentinels(master, n) → n started RedisSentinel, stopped at teardown."""
    made = []

    def make(master, n=3):
        if not RedisSentinel.available():
            pytest.fail(f"{RedisSentinel.binary} is not installed (Debian: redis-sentinel)")
        out = []
        for i in range(n):
            s = RedisSentinel(tmp_path / f"sentinel{i}", master, name=f"sentinel{i}").start()
            made.append(s)
            out.append(s)
        return out

    yield make
    for s in made:
        s.stop()


def sentinel_ready(sentinel, n_sentinels):
    """The sentinel knows the replica and the other sentinels (a failover can run)."""
    replicas = redis_call(sentinel.addr, "SENTINEL", "REPLICAS", MASTER)
    others = redis_call(sentinel.addr, "SENTINEL", "SENTINELS", MASTER)
    return (isinstance(replicas, list) and len(replicas) == 1 and
            isinstance(others, list) and len(others) == n_sentinels - 1)


class SwitchListener(threading.Thread):
    """Subscribed to +switch-master on one sentinel; records when it arrives."""

    def __init__(self, sentinel):
        super().__init__(daemon=True)
        self.conn = Resp(sentinel.addr, timeout=30)
        assert self.conn.call("SUBSCRIBE", "+switch-master")[0] == "subscribe"
        self.at = None
        self.message = None

    def run(self):
        try:
            msg = self.conn.read()
            self.at = time.monotonic()
            self.message = msg
        except OSError:
            pass

    def close(self):
        self.conn.close()


class Writer(threading.Thread):
    """Steady writes through zklb on one connection, reconnecting when it fails
    (connection closed, or -READONLY from a demoted primary), for at most
    `limit` seconds. Counts the writes and the failures of each kind."""

    def __init__(self, addr, limit=30.0):
        super().__init__(daemon=True)
        self.addr = addr
        self.limit = limit
        self.stop = threading.Event()
        self.ok = 0
        self.failed = {"readonly": 0, "closed": 0, "connect": 0}
        self.reconnects = 0
        self.acked = []         # (monotonic time, port of the server that said OK)

    def run(self):
        end = time.monotonic() + self.limit
        conn = None
        i = 0
        while not self.stop.is_set() and time.monotonic() < end:
            if conn is None:
                try:
                    conn = Resp(self.addr)
                    self.reconnects += 1
                    port = int(conn.call("CONFIG", "GET", "port")[1])
                except (OSError, ConnectionError, TypeError):
                    if conn:
                        conn.close()
                        conn = None
                    self.failed["connect"] += 1
                    time.sleep(0.01)
                    continue
            i += 1
            try:
                r = conn.call("SET", f"k{i}", i)
            except (OSError, ConnectionError):
                self.failed["closed"] += 1
                conn.close()
                conn = None
                continue
            if r == "OK":
                self.ok += 1
                if len(self.acked) < 100000:
                    self.acked.append((time.monotonic(), port))
            else:
                self.failed["readonly"] += 1
                conn.close()
                conn = None
            time.sleep(0.002)
        if conn:
            conn.close()


def test_sentinel_failover_under_writes(redis, sentinels, zklb):
    primary, replica = redis("primary", None), redis("replica", None)
    redis_call(replica.addr, "REPLICAOF", primary.host, primary.port)
    wait_until(lambda: "master_link_status:up" in
               redis_call(replica.addr, "INFO", "replication"), 10, what="replication up")
    sents = sentinels(primary, 3)
    wait_until(lambda: all(sentinel_ready(s, 3) for s in sents), 20, interval=0.2,
               what="sentinels to know the replica and each other")

    grace_ms = 300
    lb = zklb(services={SVC: {
        "listen": free_addr(),
        "discovery": {"type": "sentinel", "sentinels": [s.address for s in sents],
                      "master_name": MASTER, "close_grace": f"{grace_ms}ms"}}})
    addr = lb.listen(SVC)
    wait_until(lambda: served_port(addr, None) == primary.port, 5, what="routing to the primary")
    lb.wait_for_log(rf"svc={SVC} sentinel: primary of {MASTER} is {primary.address}")

    # A connection opened before the failover: it must be closed after the grace.
    held = Resp(addr)
    assert held.call("SET", "held", "1") == "OK"

    listener = SwitchListener(sents[1])
    listener.start()
    writer = Writer(addr)
    writer.start()
    try:
        wait_until(lambda: writer.ok >= 50, 5, what="steady writes before the failover")
        assert redis_call(sents[0].addr, "SENTINEL", "FAILOVER", MASTER) == "OK"
        wait_until(lambda: listener.at is not None, 20, interval=0.01,
                   what="+switch-master from the sentinel")
        switch_at = listener.at
        assert listener.message[2].split()[3:] == [replica.host, str(replica.port)]

        # New connections: probe every 10 ms until one reaches the new primary.
        first_new = None
        deadline = switch_at + 5
        while time.monotonic() < deadline:
            try:
                if served_port(addr, None) == replica.port:
                    first_new = time.monotonic()
                    break
            except (OSError, ConnectionError):
                pass
            time.sleep(0.01)
        assert first_new is not None, "no connection reached the new primary"
        took = first_new - switch_at
        # from here on, every new connection goes to the new primary
        assert {served_port(addr, None) for _ in range(10)} == {replica.port}

        # The connection held on the demoted primary is closed after the grace.
        held.sock.settimeout(grace_ms / 1000 + 5)
        assert held.sock.recv(1) == b"", "the held connection got data instead of a close"
        closed_after = time.monotonic() - switch_at
        time.sleep(0.5)
    finally:
        writer.stop.set()
        writer.join(10)
        listener.close()
        held.close()
    failed = sum(writer.failed.values())
    stale = sum(1 for t, port in writer.acked if t > switch_at and port == primary.port)
    print(f"\nsentinel failover: +switch-master -> first new connection to the new primary: "
          f"{took * 1000:.1f} ms; held connection closed {closed_after * 1000:.0f} ms after "
          f"the switch (close_grace {grace_ms} ms); writes ok {writer.ok}, failed {failed} "
          f"{writer.failed}, reconnects {writer.reconnects}; acknowledged by the demoted "
          f"primary after the switch: {stale}")
    assert took < 1.0, f"new connections reached the new primary {took:.3f}s after the switch"
    assert closed_after >= grace_ms / 1000 * 0.9, "closed before the grace was over"
    assert writer.ok > 0 and writer.reconnects >= 2
    m = lb.metrics()
    assert m.value("zklb_connections_closed_total", reason="backend_demoted") >= 1
    lb.wait_for_log(rf"be={primary.address} demoted: closing its")
    # the writer's last writes landed on the new primary
    assert int(redis_call(replica.addr, "DBSIZE")) > 0


class FakeSentinel(threading.Thread):
    """A listener on loopback whose every connection is served by serve(c) on
    a thread of its own; close() stops it."""

    def __init__(self):
        super().__init__(daemon=True)
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(16)
        self.address = "127.0.0.1:%d" % self.sock.getsockname()[1]
        self.stop = False

    def run(self):
        self.sock.settimeout(0.2)
        while not self.stop:
            try:
                c, _ = self.sock.accept()
            except socket.timeout:
                continue
            except OSError:
                return
            threading.Thread(target=self.serve, args=(c,), daemon=True).start()

    def close(self):
        self.stop = True
        self.sock.close()


class EndlessSentinel(FakeSentinel):
    """A hostile "sentinel": every connection gets a bulk string header of 1 GB
    and then bytes, up to `cap` bytes per connection (bounded). Records, per
    command it read first, how many bytes went out before the peer closed
    (None: all `cap` went out and the connection stayed open)."""

    def __init__(self, cap):
        super().__init__()
        self.cap = cap
        self.sent = {}

    def serve(self, c):
        c.settimeout(5)
        try:
            first = c.recv(4096)
            cmd = b"SUBSCRIBE" if b"SUBSCRIBE" in first else b"other"
            c.sendall(b"$1000000000\r\n")
            chunk, sent = b"x" * 65536, 0
            try:
                while sent < self.cap:
                    c.sendall(chunk)
                    sent += len(chunk)
                self.sent.setdefault(cmd, None)
                time.sleep(1)      # stays open: let the test see it was not closed
            except OSError:
                self.sent[cmd] = sent
        finally:
            c.close()


def test_sentinel_reply_that_never_ends_is_cut(zklb):
    """A sentinel is a peer like any other: a reply that never ends must not
    grow zklb's memory without bound. The subscription (which has no query
    timeout) is closed once a reply is over 64 KiB, logged and counted."""
    evil = EndlessSentinel(cap=64 << 20)
    evil.start()
    try:
        lb = zklb(services={SVC: {
            "listen": free_addr(),
            "discovery": {"type": "sentinel", "sentinels": [evil.address],
                          "master_name": MASTER, "query_timeout": "5s"}}})
        wait_until(lambda: b"SUBSCRIBE" in evil.sent, 20, interval=0.05,
                   what="the subscription's end")
        sent = evil.sent[b"SUBSCRIBE"]
        print(f"subscription closed after {sent} bytes sent")
        assert sent is not None, "64 MiB of one reply read and buffered, the link kept open"
        assert sent < 32 << 20, f"{sent} bytes were taken before the link was closed"
        lb.wait_for_log(rf"svc={SVC} sentinel {evil.address}: .*reply over 65536 bytes",
                        timeout=5)
        assert lb.running()
    finally:
        evil.close()


class NamingSentinel(FakeSentinel):
    """A "sentinel" that names `primary` (host, port) as the master, and on its
    subscription announces a +switch-master to it as well."""

    def __init__(self, primary):
        super().__init__()
        self.primary = primary
        self.asked = 0

    def serve(self, c):
        host, port = self.primary[0].encode(), str(self.primary[1]).encode()
        c.settimeout(5)
        try:
            first = c.recv(4096)
            if b"SUBSCRIBE" in first:
                c.sendall(b"*3\r\n$9\r\nsubscribe\r\n$14\r\n+switch-master\r\n:1\r\n")
                time.sleep(0.3)
                msg = b"%s 127.0.0.1 1 %s %s" % (MASTER.encode(), host, port)
                c.sendall(b"*3\r\n$7\r\nmessage\r\n$14\r\n+switch-master\r\n$%d\r\n%s\r\n"
                          % (len(msg), msg))
                time.sleep(3)
            else:
                self.asked += 1
                c.sendall(b"*2\r\n$%d\r\n%s\r\n$%d\r\n%s\r\n" % (len(host), host, len(port), port))
                time.sleep(1)
        except OSError:
            pass
        finally:
            c.close()


def test_sentinel_cannot_name_a_denied_primary(zklb, tmp_path):
    """The destinations policy holds before any connection, ROLE checks
    included: a sentinel that names an address the service's denied_networks
    refuses (here 127.0.0.3, standing for the metadata address or a host
    port) never gets zklb to connect there, nor to send it the password."""
    target = socket.socket()
    target.bind(("127.0.0.3", 0))
    target.listen(16)
    target.settimeout(0.1)
    evil = NamingSentinel(target.getsockname())
    evil.start()
    try:
        lb = zklb(services={SVC: {
            "listen": free_addr(), "denied_networks": ["reserved", "127.0.0.3/32"],
            "discovery": {"type": "sentinel", "sentinels": [evil.address],
                          "master_name": MASTER, "password_file": password_file(tmp_path)}}})
        wait_until(lambda: evil.asked >= 3, 10, interval=0.05, what="three rounds of asking")
        got = []
        deadline = time.monotonic() + 1.0
        while time.monotonic() < deadline:
            try:
                c, _ = target.accept()
            except socket.timeout:
                continue
            c.settimeout(0.5)
            try:
                got.append(c.recv(4096))
            except OSError:
                got.append(b"")
            c.close()
        assert got == [], f"zklb connected to the denied address and sent {got[:1]!r}"
        lb.wait_for_log(rf"svc={SVC} sentinel .*127\.0\.0\.3:\d+.*refused: denied_network "
                        rf"127\.0\.0\.3/32", timeout=5)
        lb.wait_for_log(rf"svc={SVC} sentinel: \+switch-master to 127\.0\.0\.3:\d+ refused: "
                        rf"denied_network 127\.0\.0\.3/32", timeout=5)
        assert lb.metrics().value("zklb_sentinel_failures_total", service=SVC) >= 2
        assert lb.running()
    finally:
        evil.close()
        target.close()


# ---------------------------------------------------------------------------
# mysql_primary
# ---------------------------------------------------------------------------


MYSQL_USER = "zklb"
MYSQL_PASSWORD = "p4ss word"


class MariaDB(ServerProcess):
    """mariadbd on a loopback port with its own data directory (made by
    mariadb-install-db), a unix socket for the harness's own admin commands."""

    kind = "mariadb"
    binary = shutil.which("mariadbd") or "/usr/sbin/mariadbd"
    client = shutil.which("mariadb") or "/usr/bin/mariadb"

    def __init__(self, workdir, name=None):
        super().__init__(workdir, name=name)
        self.data = self.dir / "data"
        self.socket = self.dir / "mysqld.sock"

    def argv(self):
        return [self.binary, "--no-defaults", f"--datadir={self.data}", f"--socket={self.socket}",
                f"--port={self.port}", f"--bind-address={self.host}", "--user=root",
                f"--pid-file={self.dir / 'mysqld.pid'}", f"--log-error={self.dir / 'error.log'}",
                "--skip-log-bin", "--innodb-buffer-pool-size=16M", "--skip-name-resolve"]

    def start(self, timeout=30.0):
        install = shutil.which("mariadb-install-db") or "/usr/bin/mariadb-install-db"
        r = subprocess.run([install, "--no-defaults", f"--datadir={self.data}", "--user=root",
                            "--skip-test-db", "--auth-root-authentication-method=socket"],
                           capture_output=True, timeout=120)
        assert r.returncode == 0, r.stdout.decode()[-2000:] + r.stderr.decode()[-2000:]
        return super().start(timeout)

    def sql(self, statement):
        """Run statement as root over the unix socket; its output, tab-separated."""
        r = subprocess.run([self.client, "--no-defaults", f"--socket={self.socket}", "-uroot",
                            "-N", "-B", "-e", statement], capture_output=True, timeout=30)
        assert r.returncode == 0, r.stderr.decode()
        return r.stdout.decode().strip()

    def stats(self):
        return {"accepts": 0, "active": 0}


def mysql_port_through(addr, password=MYSQL_PASSWORD):
    """@@port of the server a new connection through zklb reaches (the mariadb client)."""
    host, port = addr if isinstance(addr, tuple) else addr.rsplit(":", 1)
    r = subprocess.run([MariaDB.client, "--no-defaults", "-h", host, "-P", str(port), "--protocol=TCP",
                        f"-u{MYSQL_USER}", f"-p{password}", "-N", "-B", "-e", "SELECT @@port"],
                       capture_output=True, timeout=10)
    assert r.returncode == 0, r.stderr.decode()
    return int(r.stdout.decode().strip())


@pytest.fixture
def mariadb(tmp_path):
    made = []

    def make(name):
        if not MariaDB.available():
            pytest.fail(f"{MariaDB.binary} is not installed (Debian: mariadb-server)")
        s = MariaDB(tmp_path / name, name=name).start()
        made.append(s)
        s.sql(f"CREATE USER '{MYSQL_USER}'@'127.0.0.1' IDENTIFIED BY '{MYSQL_PASSWORD}'")
        return s

    yield make
    for s in made:
        s.stop(timeout=20)


def test_mysql_primary_follows_read_only(mariadb, zklb, tmp_path):
    m1, m2 = mariadb("m1"), mariadb("m2")
    m2.sql("SET GLOBAL read_only = 1")
    pw = password_file(tmp_path, MYSQL_PASSWORD + "\n", "mysql.pw")
    lb = zklb(services={SVC: static_service([m1, m2], balance="round_robin", health={
        "check": {"type": "mysql_primary", "user": MYSQL_USER, "password_file": pw,
                  "interval": "100ms", "timeout": "1s", "rise": 1, "fall": 1}})})
    addr = lb.listen(SVC)
    wait_until(lambda: states(lb) == {m1.address: "healthy", m2.address: "checking"}, 10,
               what=f"m1 healthy, m2 checking (states: {states(lb)})")
    assert {mysql_port_through(addr) for _ in range(4)} == {m1.port}

    # Flip: m1 read-only, m2 writable.
    mark = lb.log_mark()
    m2.sql("SET GLOBAL read_only = 0")
    m1.sql("SET GLOBAL read_only = 1")
    wait_until(lambda: states(lb) == {m1.address: "checking", m2.address: "healthy"}, 10,
               what=f"m1 checking, m2 healthy (states: {states(lb)})")
    lb.wait_for_log(rf"be={m1.address} check DOWN: read_only 1", since=mark)
    assert {mysql_port_through(addr) for _ in range(4)} == {m2.port}

    # A wrong password: the server's refusal is the reason.
    bad = password_file(tmp_path, "wrong\n", "bad.pw")
    mark = lb.log_mark()
    cfg = dict(lb.config)
    cfg["services"][SVC]["health"]["check"]["password_file"] = bad
    lb.reload(cfg)
    lb.wait_for_log(rf"be={m2.address} check DOWN: auth refused: 1045: Access denied", since=mark,
                    timeout=10)


# ---------------------------------------------------------------------------
# zone-aware routing
# ---------------------------------------------------------------------------


def curator_node(name, backend, zone):
    """The JSON Curator 5 writes for one instance whose payload names its zone."""
    return json.dumps({"name": SVC, "id": name, "address": backend.host, "port": backend.port,
                       "sslPort": None, "payload": {"zone": zone},
                       "registrationTimeUTC": int(time.time() * 1000),
                       "serviceType": "DYNAMIC", "uriSpec": None}).encode()


@pytest.mark.zookeeper
def test_zone_traffic_stays_local_spills_and_returns(backend, zklb, shared_zookeeper,
                                                     kazoo_client, zk_path):
    k = kazoo_client(shared_zookeeper.hosts)
    local = [backend("a1", "tag"), backend("a2", "tag")]
    remote = [backend("b1", "tag"), backend("b2", "tag")]
    for b, zone in [(b, "a") for b in local] + [(b, "b") for b in remote]:
        k.create(f"{zk_path}/{b.name}", curator_node(b.name, b, zone), makepath=True,
                 ephemeral=True)
    lb = zklb(zone="a", zookeeper={"hosts": shared_zookeeper.hosts, "session_timeout": "4s"},
              services={SVC: {
                  "listen": free_addr(), "connect_timeout": "1s", "balance": "round_robin",
                  "discovery": {"type": "curator", "path": zk_path},
                  "locality": {"prefer": "zone", "min_healthy_percent": 70},
                  "health": {"check": {"type": "tcp", "interval": "100ms", "rise": 1,
                                       "fall": 1}}}})
    addr = lb.listen(SVC)
    wait_until(lambda: len(states(lb)) == 4 and set(states(lb).values()) == {"healthy"}, 10,
               what=f"4 healthy instances (states: {states(lb)})")

    # All healthy: everything stays in zone a.
    assert set(tags(addr, 40)) == {"a1", "a2"}
    svc = lb.services()[SVC]
    assert svc["locality"]["local_zone"] == "a"
    assert svc["locality"]["zones"] == {"a": {"instances": 2, "routable": 2},
                                        "b": {"instances": 2, "routable": 2}}
    m = lb.metrics()
    assert m.value("zklb_service_out_of_zone_total", service=SVC) == 0
    assert m.value("zklb_service_local_zone_routable", service=SVC) == 2

    # a2 stopped: zone a is 50 % healthy, below 70 %, so 1 - 50/70 = 28.6 % of the
    # connections leave it (400 draws: 3 standard deviations are ±6.8 points).
    local[1].stop()
    wait_until(lambda: states(lb)[local[1].address] == "checking", 5,
               what=f"a2 down (states: {states(lb)})")
    got = tags(addr, 400)
    out = got["b1"] + got["b2"]
    assert got["a2"] == 0 and got["a1"] + out == 400
    assert 0.19 * 400 <= out <= 0.38 * 400, f"{out} of 400 left the zone: {got}"
    assert got["b1"] > 0 and got["b2"] > 0
    svc = lb.services()[SVC]
    assert svc["locality"]["zones"]["a"] == {"instances": 2, "routable": 1}
    assert svc["locality"]["out_of_zone_connections"] == out
    assert lb.metrics().value("zklb_service_out_of_zone_total", service=SVC) == out

    # Both of zone a stopped: everything goes to zone b (panic is not reached: 2 of 4).
    local[0].stop()
    wait_until(lambda: states(lb)[local[0].address] == "checking", 5,
               what=f"a1 down (states: {states(lb)})")
    assert set(tags(addr, 20)) == {"b1", "b2"}

    # Back: zone a serves everything again.
    local[0].restart()
    local[1].restart()
    wait_until(lambda: set(states(lb).values()) == {"healthy"}, 5,
               what=f"all healthy again (states: {states(lb)})")
    assert set(tags(addr, 40)) == {"a1", "a2"}


@pytest.mark.zookeeper
def test_zone_name_from_zookeeper_of_any_length_in_services(backend, zklb, shared_zookeeper,
                                                            kazoo_client, zk_path):
    """A zone is whatever a ZooKeeper writer put in the payload: 40 two-byte
    characters (80 bytes) are shown whole in /services, not cut inside a
    character (which made the JSON key invalid, and the zone's entry was
    used after it was freed)."""
    k = kazoo_client(shared_zookeeper.hosts)
    long_zone = "\u00e9" * 40
    b1, b2 = backend("b1", "tag"), backend("b2", "tag")
    k.create(f"{zk_path}/b1", curator_node("b1", b1, long_zone), makepath=True, ephemeral=True)
    k.create(f"{zk_path}/b2", curator_node("b2", b2, "a"), makepath=True, ephemeral=True)
    lb = zklb(zone="a", zookeeper={"hosts": shared_zookeeper.hosts, "session_timeout": "4s"},
              services={SVC: {
                  "listen": free_addr(), "connect_timeout": "1s",
                  "discovery": {"type": "curator", "path": zk_path},
                  "locality": {"prefer": "zone"},
                  "health": {"check": {"type": "tcp", "interval": "100ms", "rise": 1,
                                       "fall": 1}}}})
    wait_until(lambda: len(states(lb)) == 2 and set(states(lb).values()) == {"healthy"}, 10,
               what=f"2 healthy instances (states: {states(lb)})")
    for _ in range(3):
        zones = lb.services()[SVC]["locality"]["zones"]
        assert zones == {"a": {"instances": 1, "routable": 1},
                         long_zone: {"instances": 1, "routable": 1}}, zones
    assert lb.running()


# ---------------------------------------------------------------------------
# max_connections_per_instance
# ---------------------------------------------------------------------------


@pytest.mark.parametrize("balance", ["least_conn", "p2c", "round_robin", "random"])
def test_max_connections_per_instance(backend, zklb, balance):
    b1, b2 = backend("b1", "tag"), backend("b2", "tag")
    lb = zklb(services={SVC: static_service([b1, b2], balance=balance, retries=2,
                                            max_connections_per_instance=3)})
    addr = lb.listen(SVC)
    held = hold(addr, 6)
    try:
        assert sorted(t for t, _ in held) == ["b1"] * 3 + ["b2"] * 3
        b1.wait_active(3)
        b2.wait_active(3)
        # Both full: the next clients are closed without reaching anyone.
        for _ in range(5):
            s = connect(addr)
            s.sendall(b"?")
            assert closed_within(s, 5) is not None, "a client got a 4th slot"
            s.close()
        assert b1.active == 3 and b2.active == 3 and b1.accepts + b2.accepts == 6
        m = lb.metrics()
        assert m.value("zklb_service_at_capacity_total", service=SVC) == 5
        assert m.value("zklb_connections_closed_total", reason="instance_limit") == 5
        # A slot frees: the next client takes it, on the instance that has room.
        held[0][1].close()
        freed = held[0][0]
        wait_until(lambda: lb.instances(SVC)[(b1 if freed == "b1" else b2).address]["active"] == 2,
                   5, what="the freed slot counted")
        again = hold(addr, 1)
        held[0] = again[0]
        assert again[0][0] == freed
    finally:
        close_all(held)


# ---------------------------------------------------------------------------
# PROXY protocol v2 towards backends
# ---------------------------------------------------------------------------


class ProxyV2Backend(threading.Thread):
    """Reads a PROXY v2 header byte by byte (one recv(1) per byte), answers one
    line saying what it parsed — "TCP4 src dst", "TCP6 src dst", "LOCAL", or
    "BAD <why>" — then echoes. One connection at a time; loopback."""

    SIG = b"\r\n\r\n\x00\r\nQUIT\n"

    def __init__(self):
        super().__init__(daemon=True)
        self.lsock = socket.create_server(("127.0.0.1", 0))
        self.lsock.settimeout(0.2)
        self.address = "127.0.0.1:%d" % self.lsock.getsockname()[1]
        self.stopping = False

    @staticmethod
    def _byte(conn):
        b = conn.recv(1)
        if not b:
            raise ConnectionError("closed inside the header")
        return b[0]

    def _parse(self, conn):
        head = bytes(self._byte(conn) for _ in range(16))
        if head[:12] != self.SIG:
            return f"BAD signature {head[:12]!r}"
        ver_cmd, fam, length = head[12], head[13], int.from_bytes(head[14:16], "big")
        body = bytes(self._byte(conn) for _ in range(length))
        if ver_cmd == 0x20:
            return "LOCAL" if fam == 0 and length == 0 else f"BAD local fam={fam} len={length}"
        if ver_cmd != 0x21:
            return f"BAD version/command {ver_cmd:#x}"
        if fam == 0x11 and length == 12:
            src = socket.inet_ntop(socket.AF_INET, body[0:4])
            dst = socket.inet_ntop(socket.AF_INET, body[4:8])
            return (f"TCP4 {src}:{int.from_bytes(body[8:10], 'big')} "
                    f"{dst}:{int.from_bytes(body[10:12], 'big')}")
        if fam == 0x21 and length == 36:
            src = socket.inet_ntop(socket.AF_INET6, body[0:16])
            dst = socket.inet_ntop(socket.AF_INET6, body[16:32])
            return (f"TCP6 [{src}]:{int.from_bytes(body[32:34], 'big')} "
                    f"[{dst}]:{int.from_bytes(body[34:36], 'big')}")
        return f"BAD fam={fam:#x} len={length}"

    def run(self):
        while not self.stopping:
            try:
                conn, _ = self.lsock.accept()
            except (socket.timeout, TimeoutError):
                continue
            except OSError:
                return
            with conn:
                conn.settimeout(5)
                try:
                    conn.sendall(self._parse(conn).encode() + b"\n")
                    while data := conn.recv(65536):
                        conn.sendall(data)
                except OSError:
                    pass

    def stop(self):
        self.stopping = True
        self.lsock.close()
        self.join(5)


def proxied_line(sock):
    """Send a payload; → (the backend's header line, the payload echoed after it)."""
    sock.settimeout(5)
    sock.sendall(b"payload\n")
    buf = b""
    while buf.count(b"\n") < 2:
        chunk = sock.recv(4096)
        if not chunk:
            break
        buf += chunk
    line, _, rest = buf.partition(b"\n")
    return line.decode(), rest


def test_proxy_protocol_v2_header(zklb, tmp_path):
    be = ProxyV2Backend()
    be.start()
    try:
        v4_listen = free_addr()
        v6_port = free_port("::1")
        unix_path = tmp_path / "web.sock"
        services = {
            "v4": static_service([be.address], listen=v4_listen, proxy_protocol="v2"),
            "v6": static_service([be.address], listen=f"[::1]:{v6_port}", proxy_protocol="v2"),
            "unix": static_service([be.address], listen=f"unix:{unix_path}", proxy_protocol="v2"),
        }
        lb = zklb(services=services)

        host, port = v4_listen.rsplit(":", 1)
        with socket.create_connection((host, int(port)), timeout=5) as c:
            me = c.getsockname()
            line, echo = proxied_line(c)
        assert line == f"TCP4 {me[0]}:{me[1]} {host}:{port}"
        assert echo == b"payload\n"

        with socket.create_connection(("::1", v6_port), timeout=5) as c:
            me = c.getsockname()
            line, echo = proxied_line(c)
        assert line == f"TCP6 [::1]:{me[1]} [::1]:{v6_port}"
        assert echo == b"payload\n"

        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as c:
            c.connect(str(unix_path))
            line, echo = proxied_line(c)
        assert line == "LOCAL"
        assert echo == b"payload\n"
    finally:
        be.stop()


def test_zklb_check_refuses_proxy_protocol_with_pooling(tmp_path):
    cfg = tmp_path / "z.yaml"
    cfg.write_text(to_yaml(zklb_config({"web": static_service(
        ["127.0.0.1:9"], proxy_protocol="v2", pool={"reuse": "http1"})})))
    r = run_zklb(["check", "-c", str(cfg)])
    assert r.returncode != 0
    assert ("services.web.proxy_protocol: excludes pool.reuse and pool.prewarm: a pooled "
            "connection cannot carry a per-client PROXY header") in r.stderr + r.stdout
