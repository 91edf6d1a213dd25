"""Pooled HTTP/1 safety (issue 12) against Debian's nginx with `pool.reuse: http1`,
counting nginx's own accepts (stub_status):

  - a connection whose request carries `Authorization: NTLM ...` (or whose
    response asks for Negotiate) authenticates the connection, not the request:
    it is pinned to its client and never pooled, so N such clients make N
    accepts at nginx, while N plain clients share one or two;
  - a request with a Transfer-Encoding other than one lone `chunked` is relayed
    (the client gets nginx's own answer) and its connection is not reused;
  - a request with bare LF line ends, which nginx answers and keeps alive, is
    relayed and its connection is not reused either.

    tests/run tests/integration/test_reuse_safety.py
"""

import socket

import pytest

from harness import NginxHTTP, connect, static_service, wait_until

SVC = "web"
NOT_REUSABLE = "zklb_upstream_not_reusable_total"


@pytest.fixture
def nginx(tmp_path):
    if not NginxHTTP.available():
        pytest.fail("nginx is not installed (Debian: nginx-light): run tests/deps")
    ng = NginxHTTP(tmp_path / "nginx").start()
    yield ng
    ng.stop()


def start(zklb, ng):
    """One worker: one idle pool, so nginx's accept count is exact."""
    return zklb(services={SVC: static_service([ng], pool={"reuse": "http1"})},
                drain_timeout="1s", workers=1)


def exchange(addr, request, timeout=5.0):
    """Send request on a new connection, read one response (headers + Content-Length
    body, or up to EOF), close. → bytes."""
    s = connect(addr, timeout)
    try:
        s.sendall(request)
        buf = b""
        while b"\r\n\r\n" not in buf:
            chunk = s.recv(65536)
            if not chunk:
                return buf
            buf += chunk
        head, _, body = buf.partition(b"\r\n\r\n")
        length = None
        for line in head.split(b"\r\n")[1:]:
            name, _, value = line.partition(b":")
            if name.strip().lower() == b"content-length":
                length = int(value)
        while length is not None and len(body) < length:
            chunk = s.recv(65536)
            if not chunk:
                break
            body += chunk
        return head + b"\r\n\r\n" + body
    finally:
        s.close()


def settled(lb):
    wait_until(lambda: lb.metrics().value("zklb_backend_connections_active", service=SVC) == 0, 5,
               what="every client relay closed")


def not_reusable(lb, verdict):
    return lb.metrics().value(NOT_REUSABLE, verdict=verdict) or 0


def test_plain_clients_share_a_connection(nginx, zklb):
    """The baseline the other tests contrast with: pooling works here."""
    lb = start(zklb, nginx)
    addr = lb.listen(SVC)
    for i in range(20):
        r = exchange(addr, f"GET /r/{i} HTTP/1.1\r\nHost: a\r\n\r\n".encode())
        assert r.startswith(b"HTTP/1.1 200") and r.endswith(f"r{i}\n".encode()), r
        settled(lb)
    assert nginx.stats()["accepts"] <= 2


@pytest.mark.parametrize("auth", ["request", "response"])
def test_ntlm_negotiate_connections_are_pinned(nginx, zklb, auth):
    lb = start(zklb, nginx)
    addr = lb.listen(SVC)
    n = 12
    for i in range(n):
        if auth == "request":
            req = (f"GET /r/{i} HTTP/1.1\r\nHost: a\r\n"
                   f"Authorization: NTLM TlRMTVNTUAABAAAAB4IIog==\r\n\r\n").encode()
        else:
            # A client answering a Negotiate challenge on the same connection.
            req = (f"GET /r/{i} HTTP/1.1\r\nHost: a\r\n"
                   f"Authorization: Negotiate YIIGhgYGKwYBBQUCoIIGejCCBnagMDAu\r\n\r\n").encode()
        r = exchange(addr, req)
        assert r.startswith(b"HTTP/1.1 200") and r.endswith(f"r{i}\n".encode()), r
        settled(lb)
    # Every client had a connection of its own: nginx accepted one per client.
    assert nginx.stats()["accepts"] == n
    assert not_reusable(lb, "pinned") == n
    assert lb.metrics().value("zklb_upstream_connections_reused_total", service=SVC) == 0


def test_transfer_encoding_request_relayed_not_reused(nginx, zklb):
    lb = start(zklb, nginx)
    addr = lb.listen(SVC)
    r = exchange(addr, b"GET /r/1 HTTP/1.1\r\nHost: a\r\n\r\n")
    assert r.endswith(b"r1\n")
    settled(lb)
    before = nginx.stats()["accepts"]
    # Relayed as it is: the client sees nginx's own verdict on it.
    r = exchange(addr, b"POST /r/2 HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: gzip, chunked\r\n\r\n"
                       b"0\r\n\r\n")
    assert r.startswith(b"HTTP/1.1 501"), r[:200]
    settled(lb)
    assert not_reusable(lb, "ambiguous") == 1
    # The next client is not handed the connection the odd request used.
    r = exchange(addr, b"GET /r/3 HTTP/1.1\r\nHost: a\r\n\r\n")
    assert r.endswith(b"r3\n")
    assert nginx.stats()["accepts"] == before + 1


def test_bare_lf_request_relayed_not_reused(nginx, zklb):
    """nginx answers bare-LF requests and keeps the connection: only zklb's
    tracker keeps it out of the pool."""
    lb = start(zklb, nginx)
    addr = lb.listen(SVC)
    n = 8
    for i in range(n):
        r = exchange(addr, f"GET /r/{i} HTTP/1.1\nHost: a\n\n".encode())
        assert r.startswith(b"HTTP/1.1 200") and r.endswith(f"r{i}\n".encode()), r
        assert b"keep-alive" in r.lower()
        settled(lb)
    assert nginx.stats()["accepts"] == n
    assert not_reusable(lb, "ambiguous") == n
