"""Routing beyond least-connections (issue 14), against real peers on loopback.

  * redis_role: a static set of two real redis-server processes, a password
    (AUTH from a 0600 file); the check passes only on the primary, so routing
    follows the primary when REPLICAOF swaps the roles.
"""

import os
import socket

import pytest

from harness import RedisServer, resp_command, static_service, wait_until

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
    """redis(name) → a started RedisServer (password PASSWORD), stopped at teardown."""
    made = []

    def make(name):
        if not RedisServer.available():
            pytest.fail(f"{RedisServer.binary} is not installed (Debian: redis-server)")
        s = RedisServer(tmp_path / name, name=name).start()
        made.append(s)
        redis_call(s.addr, "CONFIG", "SET", "masterauth", PASSWORD)
        redis_call(s.addr, "CONFIG", "SET", "requirepass", PASSWORD)
        s._own_queries += 2
        return s

    yield make
    for s in made:
        s.stop()


def password_file(tmp_path, text=PASSWORD + "\n"):
    p = tmp_path / "redis.pw"
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
    assert lb.metrics().value("zklb_service_check_failures_total", service=SVC) >= 2


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
