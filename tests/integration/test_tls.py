"""Upstream TLS (services.X.tls, docs/design.md), against real TLS servers:
nginx with `ssl` (and `ssl_verify_client on`), `openssl s_server` and
redis-server's `--tls-port`, with certificates this module makes with the
`openssl` command (a CA, a second CA, server certificates for a name and for
127.0.0.1, one for another name, an expired one, a client certificate).

What is checked:
  * `zklb check` validates every file (FILE:LINE:COL), warns about an open key;
  * byte-exact relay both ways (1 B, 64 KiB, 16 MiB) over TLS;
  * a wrong CA, an expired certificate, a wrong name: refused, counted, logged,
    and not one byte of the client's reaches the backend (a tap in front of the
    server records the raw bytes; a good certificate is the control);
  * mTLS towards servers that require a client certificate;
  * Curator sslPort routing; a stalled handshake retried elsewhere;
  * pool reuse and prewarm over TLS, counted at nginx; resumption; reload of the CA.
"""

import json
import os
import re
import select
import signal
import socket
import ssl
import subprocess
import threading
import time
from pathlib import Path

import pytest

import harness
from harness import (NginxHTTP, RedisServer, SockReader, connect, free_port, http_request,
                     random_bytes, resp_command, run_zklb, sha256, static_service, wait_until)

SVC = "web"
HS = "zklb_backend_tls_handshakes_total"
CONNECT_FAILURES = "zklb_backend_connect_failures_total"


# ---------------------------------------------------------------------------
# Certificates
# ---------------------------------------------------------------------------


def _openssl(*args, cwd):
    r = subprocess.run(["openssl", *args], cwd=cwd, capture_output=True, text=True, timeout=30)
    assert r.returncode == 0, f"openssl {' '.join(args)}:\n{r.stderr}"


class Pki:
    """Keys and certificates in dir, made with the openssl command (EC P-256)."""

    def __init__(self, d):
        self.dir = Path(d)
        self.dir.mkdir(parents=True, exist_ok=True)
        self.ca = self._ca("ca")
        self.other_ca = self._ca("other-ca")
        # A name and 127.0.0.1: what a static 127.0.0.1 backend is verified against.
        self.server = self._leaf("server", "backend.test", "DNS:backend.test,IP:127.0.0.1")
        self.wrong_name = self._leaf("wrong-name", "other.test", "DNS:other.test")
        self.untrusted = self._leaf("untrusted", "backend.test",
                                    "DNS:backend.test,IP:127.0.0.1", ca="other-ca")
        self.expired = self._leaf("expired", "backend.test", "DNS:backend.test,IP:127.0.0.1",
                                  expired=True)
        self.client = self._leaf("client", "zklb-client", None, client=True)
        for _, key in (self.server, self.wrong_name, self.untrusted, self.expired, self.client):
            os.chmod(key, 0o600)

    def _ca(self, name):
        _openssl("req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
                 "-nodes", "-keyout", f"{name}.key", "-out", f"{name}.pem", "-days", "30",
                 "-subj", f"/CN=zklb test {name}", cwd=self.dir)
        return self.dir / f"{name}.pem"

    def _leaf(self, name, cn, san, ca="ca", expired=False, client=False):
        d = self.dir
        _openssl("req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
                 "-keyout", f"{name}.key", "-out", f"{name}.csr", "-subj", f"/CN={cn}", cwd=d)
        ext = [f"subjectAltName={san}"] if san else []
        ext.append("extendedKeyUsage=" + ("clientAuth" if client else "serverAuth"))
        (d / f"{name}.ext").write_text("\n".join(ext) + "\n")
        if expired:
            # `openssl ca` is the command that takes explicit validity dates.
            (d / f"{name}.db").write_text("")
            (d / f"{name}.cnf").write_text(f"""[ca]
default_ca = d
[d]
database = {d}/{name}.db
new_certs_dir = {d}
serial = {d}/{name}.serial
default_md = sha256
policy = p
[p]
commonName = supplied
""")
            (d / f"{name}.serial").write_text("1000\n")
            _openssl("ca", "-batch", "-notext", "-config", f"{name}.cnf", "-cert", f"{ca}.pem",
                     "-keyfile", f"{ca}.key", "-in", f"{name}.csr", "-out", f"{name}.pem",
                     "-startdate", "20200101000000Z", "-enddate", "20200201000000Z",
                     "-extfile", f"{name}.ext", cwd=d)
        else:
            _openssl("x509", "-req", "-in", f"{name}.csr", "-CA", f"{ca}.pem", "-CAkey",
                     f"{ca}.key", "-CAcreateserial", "-out", f"{name}.pem", "-days", "30",
                     "-extfile", f"{name}.ext", cwd=d)
        return d / f"{name}.pem", d / f"{name}.key"


@pytest.fixture(scope="module")
def pki(tmp_path_factory):
    return Pki(tmp_path_factory.mktemp("pki"))


# ---------------------------------------------------------------------------
# TLS servers
# ---------------------------------------------------------------------------


class NginxTLS(NginxHTTP):
    """NginxHTTP on `ssl`, its access log with SNI and session reuse per request:
    tls_entries() → [(connection serial, server name, "r" or ".", uri)]."""

    kind = "nginx-tls"

    def __init__(self, workdir, pki, cert=None, verify_client=False, **kw):
        super().__init__(workdir, **kw)
        self.pki = pki
        cert, key = cert or pki.server
        text = self.conf.read_text()
        tls = (f"listen {self.host}:{self.port} ssl backlog=4096;\n"
               f"        ssl_certificate {cert};\n        ssl_certificate_key {key};\n"
               f"        ssl_session_tickets on;\n        ssl_protocols TLSv1.2 TLSv1.3;\n")
        if verify_client:
            tls += f"        ssl_verify_client on;\n        ssl_client_certificate {pki.ca};\n"
        text = text.replace(f"listen {self.host}:{self.port} backlog=4096;", tls)
        self.tls_log = self.dir / "tls.log"
        text = text.replace(
            "access_log " + str(self.access_log) + " conn;",
            f"access_log {self.access_log} conn;\n"
            "    log_format tls '$connection $ssl_server_name $ssl_session_reused $request_uri';\n"
            f"    access_log {self.tls_log} tls;")
        self.conf.write_text(text)

    def _connect(self, timeout):
        ctx = ssl.create_default_context(cafile=str(self.pki.ca))
        ctx.check_hostname = False
        ctx.load_cert_chain(*map(str, self.pki.client))
        return ctx.wrap_socket(socket.create_connection(self.addr, timeout=timeout))

    def tls_entries(self):
        try:
            lines = self.tls_log.read_text().splitlines()
        except FileNotFoundError:
            return []
        return [tuple(line.split()) for line in lines if len(line.split()) == 4]


class RedisTLS(RedisServer):
    """redis-server on --tls-port only (no plain port), no client certificate needed."""

    kind = "redis-tls"

    def __init__(self, workdir, pki, **kw):
        super().__init__(workdir, **kw)
        self.pki = pki

    def argv(self):
        cert, key = self.pki.server
        return [self.binary, "--port", "0", "--tls-port", str(self.port), "--bind", self.host,
                "--tls-cert-file", str(cert), "--tls-key-file", str(key),
                "--tls-ca-cert-file", str(self.pki.ca), "--tls-auth-clients", "no",
                "--save", "", "--appendonly", "no", "--dir", str(self.dir)]


class SServer:
    """`openssl s_server -rev` (each line comes back reversed) on a loopback port."""

    def __init__(self, workdir, cert, key, extra=()):
        self.dir = Path(workdir)
        self.dir.mkdir(parents=True, exist_ok=True)
        self.port = free_port()
        self.host = "127.0.0.1"
        self.out = self.dir / f"s_server-{self.port}.out"
        self.argv = ["openssl", "s_server", "-accept", f"{self.host}:{self.port}", "-cert",
                     str(cert), "-key", str(key), "-rev", *extra]
        self.proc = None

    @property
    def address(self):
        return f"{self.host}:{self.port}"

    def start(self):
        with open(self.out, "ab") as out:
            self.proc = subprocess.Popen(self.argv, stdin=subprocess.PIPE, stdout=out,
                                         stderr=subprocess.STDOUT, start_new_session=True)
        harness.track(self.proc)
        wait_until(lambda: harness.port_listening(self.port), what="s_server listening")
        return self

    def stop(self):
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(5)


class Tap:
    """A TCP relay in front of a server that keeps every raw byte it was sent:
    what zklb put on the wire, before any TLS."""

    def __init__(self, target):
        self.target = harness.split_addr(target)
        self.l = socket.socket()
        self.l.bind(("127.0.0.1", 0))
        self.l.listen(64)
        self.port = self.l.getsockname()[1]
        self.raw = bytearray()
        self.accepted = 0
        self.stopping = False
        threading.Thread(target=self._run, daemon=True).start()

    @property
    def address(self):
        return f"127.0.0.1:{self.port}"

    def _run(self):
        while not self.stopping:
            try:
                c, _ = self.l.accept()
            except OSError:
                return
            self.accepted += 1
            threading.Thread(target=self._pump, args=(c,), daemon=True).start()

    def _pump(self, c):
        try:
            u = socket.create_connection(self.target, timeout=5)
        except OSError:
            c.close()
            return
        socks = [c, u]
        try:
            while socks:
                r, _, _ = select.select(socks, [], [], 10)
                if not r:
                    return
                for s in r:
                    data = s.recv(65536)
                    other = u if s is c else c
                    if not data:
                        socks.remove(s)
                        try:
                            other.shutdown(socket.SHUT_WR)
                        except OSError:
                            pass
                        continue
                    if s is c:
                        self.raw += data
                    other.sendall(data)
        except OSError:
            pass
        finally:
            c.close()
            u.close()

    def close(self):
        self.stopping = True
        self.l.close()


@pytest.fixture
def servers(tmp_path, pki):
    """servers(kind, **kw) → a started TLS server, stopped at teardown."""
    made = []

    def make(kind, **kw):
        n = len(made)
        if kind == "nginx":
            s = NginxTLS(tmp_path / f"nginx{n}", pki, **kw)
        elif kind == "redis":
            s = RedisTLS(tmp_path / f"redis{n}", pki, **kw)
        else:
            s = SServer(tmp_path / f"s_server{n}", **kw)
        made.append(s)
        return s.start()

    yield make
    for s in made:
        s.stop()


def tls_conf(pki, **kw):
    conf = {"ca": str(pki.ca)}
    conf.update(kw)
    return conf


def hs(lb, backend, result):
    return lb.metrics().value(HS, service=SVC, backend=backend, result=result) or 0


def bm(lb, name, backend):
    """A per-backend family's value for backend ("host:port") of SVC, 0 when absent."""
    return lb.metrics().value(name, service=SVC, backend=backend) or 0


def http_get(addr, path, timeout=10.0):
    """One request on a new connection (Connection: close) → (status, headers, body);
    (None, {}, b"") when zklb closed the connection without an answer."""
    s = connect(addr, timeout)
    try:
        s.sendall(http_request(path, close=True))
        return SockReader(s).http_response()
    except (ConnectionError, socket.timeout):
        return None, {}, b""
    finally:
        s.close()


def rev_roundtrip(addr, line=b"hello zklb\n", timeout=5.0):
    """Send a line through zklb to an s_server -rev; → what came back before EOF or timeout."""
    s = connect(addr, timeout)
    try:
        s.sendall(line)
        want = line[:-1][::-1] + b"\n"
        got = b""
        deadline = time.monotonic() + timeout
        while len(got) < len(want) and time.monotonic() < deadline:
            try:
                chunk = s.recv(4096)
            except (ConnectionResetError, socket.timeout):
                break
            if not chunk:
                break
            got += chunk
        return got
    finally:
        s.close()


# ---------------------------------------------------------------------------
# zklb check
# ---------------------------------------------------------------------------


def test_check_validates_tls_files(tmp_path, pki):
    cert, key = pki.client
    _, other_key = pki.server
    open_key = tmp_path / "open.key"
    open_key.write_bytes(Path(key).read_bytes())
    os.chmod(open_key, 0o644)

    def check(tls):
        cfg = harness.to_yaml(harness.zklb_config({SVC: static_service(["127.0.0.1:1"], tls=tls)}))
        f = tmp_path / "z.yaml"
        f.write_text(cfg)
        return f, cfg, run_zklb(["check", "-c", str(f)])

    def where(cfg, key_name):
        for n, line in enumerate(cfg.splitlines(), 1):
            m = re.match(rf"(\s*){key_name}: ", line)
            if m:
                return n, len(line) - len(line.lstrip()) + len(key_name) + 3
        raise AssertionError(key_name)

    f, cfg, r = check(tls_conf(pki, cert=str(cert), key=str(key)))
    assert r.returncode == 0, r.stderr
    assert "ok (1 services" in r.stdout

    # A key that does not belong to the certificate: an error at `key`.
    f, cfg, r = check(tls_conf(pki, cert=str(cert), key=str(other_key)))
    line, col = where(cfg, "key")
    assert r.returncode == 1
    assert f"{f}:{line}:{col}: services.web.tls.key: {other_key} does not match the certificate" \
        in r.stderr, r.stderr

    # A missing CA file, a CA file that is not one.
    f, cfg, r = check(tls_conf(pki, ca=str(tmp_path / "missing.pem")))
    line, col = where(cfg, "ca")
    assert f"{f}:{line}:{col}: services.web.tls.ca: cannot read {tmp_path}/missing.pem: " \
           "No such file or directory" in r.stderr, r.stderr
    f, cfg, r = check(tls_conf(pki, ca=str(key)))
    assert r.returncode == 1 and f"services.web.tls.ca: cannot load {key} as PEM certificates" \
        in r.stderr, r.stderr

    # A key readable by others: valid, with a warning at `key`.
    f, cfg, r = check(tls_conf(pki, cert=str(cert), key=str(open_key)))
    line, col = where(cfg, "key")
    assert r.returncode == 0, r.stderr
    assert f"{f}:{line}:{col}: services.web.tls.key: {open_key} is readable by group or " \
           "other (mode 0644)" in r.stderr, r.stderr


# ---------------------------------------------------------------------------
# Relay
# ---------------------------------------------------------------------------


@pytest.mark.parametrize("size", [1, 64 << 10, 16 << 20], ids=["1B", "64KiB", "16MiB"])
def test_byte_exact_both_ways_through_redis_tls(servers, pki, zklb, size):
    """SET a value through zklb and GET it back: client→backend and backend→client
    bytes are compared whole."""
    r = servers("redis")
    lb = zklb(services={SVC: static_service([r.address], tls=tls_conf(pki),
                                            max_buffer="64k")})
    value = random_bytes(size, seed=size)
    s = connect(lb.listen(SVC), timeout=60)
    s.sendall(resp_command("SET", "k", value) + resp_command("GET", "k"))
    rd = SockReader(s)
    assert rd.line() == b"+OK\r\n"
    assert rd.line() == b"$%d\r\n" % size
    got = rd.exactly(size)
    assert sha256(got) == sha256(value)
    assert rd.exactly(2) == b"\r\n"
    s.close()
    assert hs(lb, r.address, "full") + hs(lb, r.address, "resumed") == 1
    assert hs(lb, r.address, "verify") == 0


@pytest.mark.parametrize("size", [1, 64 << 10, 16 << 20], ids=["1B", "64KiB", "16MiB"])
def test_byte_exact_download_from_nginx_tls_with_sni(servers, pki, zklb, size):
    n = servers("nginx", big_size=size)
    lb = zklb(services={SVC: static_service([n.address], tls=tls_conf(
        pki, server_name="backend.test"), max_buffer="16k")})
    status, headers, body = http_get(lb.listen(SVC), "/big/7", timeout=60)
    assert status == 200
    assert sha256(body) == n.big_sha
    # On the wire: the body and TLS's overhead; in plaintext: the response.
    m = lb.metrics()
    wire_in = m.value("zklb_backend_tls_bytes_total", service=SVC, backend=n.address,
                      direction="in")
    plain_in = m.value("zklb_backend_bytes_in_total", service=SVC, backend=n.address)
    assert plain_in >= size and wire_in > plain_in
    assert m.value("zklb_backend_tls_bytes_total", service=SVC, backend=n.address,
                   direction="out") > 0
    # SNI: the configured server_name reached nginx.
    wait_until(lambda: n.tls_entries(), what="nginx tls log")
    assert n.tls_entries()[0][1] == "backend.test"


def test_ip_literal_backend_verified_by_ip_without_sni(servers, pki, zklb):
    n = servers("nginx")
    lb = zklb(services={SVC: static_service([n.address], tls=tls_conf(pki))})
    status, _, body = http_get(lb.listen(SVC), "/r/5")
    assert status == 200 and body == b"r5\n"
    wait_until(lambda: n.tls_entries(), what="nginx tls log")
    assert n.tls_entries()[0][1] == "-"     # no SNI for an address


def test_half_close_is_close_notify(servers, pki, zklb):
    """The client's FIN reaches s_server as close_notify after its line; the reply to
    the line still comes back, then EOF."""
    srv = servers("s_server", cert=pki.server[0], key=pki.server[1])
    lb = zklb(services={SVC: static_service([srv.address], tls=tls_conf(pki))})
    s = connect(lb.listen(SVC))
    s.sendall(b"abc\n")
    s.shutdown(socket.SHUT_WR)
    got = b""
    while True:
        chunk = s.recv(4096)
        if not chunk:
            break
        got += chunk
    assert got == b"cba\n"
    s.close()


CASES = {
    "wrong_ca": lambda p: (p.untrusted, "unable to get local issuer certificate"),
    "expired": lambda p: (p.expired, "certificate has expired"),
    "wrong_name": lambda p: (p.wrong_name, "hostname mismatch"),
}


@pytest.mark.parametrize("case", ["good"] + list(CASES))
def test_bad_certificates_refused_and_no_plaintext_sent(servers, pki, zklb, tmp_path, case):
    """Behind a tap that records every raw byte zklb sends. The good certificate is
    the control: the line comes back and the tap saw only ciphertext."""
    if case == "good":
        (cert, key), reason = pki.server, None
    else:
        (cert, key), reason = CASES[case](pki)
    srv = servers("s_server", cert=cert, key=key)
    tap = Tap(srv.address)
    try:
        name = "backend.test" if case == "wrong_name" else None
        conf = tls_conf(pki, **({"server_name": name} if name else {}))
        lb = zklb(services={SVC: static_service([tap.address], tls=conf, retries=0)})
        secret = b"SECRET-%s-0123456789\n" % case.encode()
        got = rev_roundtrip(lb.listen(SVC), secret)
        m = lb.metrics()
        if case == "good":
            assert got == secret[:-1][::-1] + b"\n"
            assert hs(lb, tap.address, "full") == 1
        else:
            assert got == b""
            assert m.value(HS, service=SVC, backend=tap.address, result="verify") == 1
            assert m.value(CONNECT_FAILURES, service=SVC, backend=tap.address) == 1
            lb.wait_for_log(rf"be={re.escape(tap.address)} TLS handshake failed \(verify\): "
                            rf"certificate verify failed: {reason}")
        assert tap.accepted == 1
        assert secret[:-1] not in bytes(tap.raw)
        assert b"SECRET" not in bytes(tap.raw)
    finally:
        tap.close()


def test_verify_failures_are_logged_rate_limited(servers, pki, zklb):
    srv = servers("s_server", cert=pki.untrusted[0], key=pki.untrusted[1])
    lb = zklb(services={SVC: static_service([srv.address], tls=tls_conf(pki), retries=0,
                                            health={"failures_to_eject": 1000})})
    for _ in range(5):
        assert rev_roundtrip(lb.listen(SVC)) == b""
    wait_until(lambda: hs(lb, srv.address, "verify") == 5, what="5 verify failures")
    assert len(re.findall(r"TLS handshake failed \(verify\)", lb.log())) == 1


def test_mtls_against_s_server_requiring_a_client_certificate(servers, pki, zklb):
    srv = servers("s_server", cert=pki.server[0], key=pki.server[1],
                  extra=("-Verify", "1", "-CAfile", str(pki.ca)))
    cert, key = pki.client
    lb = zklb(services={SVC: static_service([srv.address], tls=tls_conf(
        pki, cert=str(cert), key=str(key)))})
    assert rev_roundtrip(lb.listen(SVC)) == b"blkz olleh\n"

    # Control: without the client certificate the server refuses.
    lb2 = zklb(services={SVC: static_service([srv.address], tls=tls_conf(pki), retries=0)})
    assert rev_roundtrip(lb2.listen(SVC)) == b""


def test_mtls_against_nginx_ssl_verify_client(servers, pki, zklb):
    n = servers("nginx", verify_client=True)
    cert, key = pki.client
    lb = zklb(services={SVC: static_service([n.address], tls=tls_conf(
        pki, cert=str(cert), key=str(key)))})
    status, _, body = http_get(lb.listen(SVC), "/r/9")
    assert status == 200 and body == b"r9\n"
    lb2 = zklb(services={SVC: static_service([n.address], tls=tls_conf(pki), retries=0)})
    status, _, _ = http_get(lb2.listen(SVC), "/r/9")
    assert status == 400       # nginx: "No required SSL certificate was sent"


def test_stalled_handshake_times_out_and_is_retried_elsewhere(servers, pki, zklb, backend):
    """A backend that accepts TCP and never answers the ClientHello: the connect
    timeout covers the handshake, and the client is served by the other one."""
    stall = backend("stall", mode="hold")
    n = servers("nginx")
    lb = zklb(services={SVC: static_service([stall, n.address], tls=tls_conf(pki),
                                            connect_timeout="300ms", balance="round_robin",
                                            retries=1,
                                            health={"failures_to_eject": 1000})})
    for i in range(4):
        status, _, body = http_get(lb.listen(SVC), f"/r/{i}")
        assert body == b"r%d\n" % i
    assert hs(lb, stall.address, "timeout") >= 1
    assert lb.metrics().value(CONNECT_FAILURES, service=SVC, backend=stall.address) >= 1
    assert hs(lb, n.address, "full") + hs(lb, n.address, "resumed") == 4


def test_handshake_failure_is_retried_on_another_instance(servers, pki, zklb):
    bad = servers("s_server", cert=pki.expired[0], key=pki.expired[1])
    good = servers("s_server", cert=pki.server[0], key=pki.server[1])
    lb = zklb(services={SVC: static_service([bad.address, good.address], tls=tls_conf(pki),
                                            balance="round_robin", retries=1,
                                            health={"failures_to_eject": 2})})
    for _ in range(4):
        assert rev_roundtrip(lb.listen(SVC)) == b"blkz olleh\n"
    # Two verify failures eject the expired one.
    wait_until(lambda: lb.instances(SVC)[bad.address]["state"] == "ejected",
               what="expired backend ejected")


# ---------------------------------------------------------------------------
# Pool, resumption, reload
# ---------------------------------------------------------------------------


def test_pool_reuse_and_prewarm_over_tls(servers, pki, zklb):
    n = servers("nginx")
    lb = zklb(services={SVC: static_service([n.address], tls=tls_conf(pki),
                                            pool={"reuse": "http1", "prewarm": 2})},
              workers=1)
    wait_until(lambda: bm(lb, "zklb_upstream_idle_connections", n.address) == 2,
               what="2 prewarmed TLS connections")
    # Prewarm completed the handshakes: they are counted before any client came.
    assert hs(lb, n.address, "full") + hs(lb, n.address, "resumed") == 2
    for i in range(30):
        s = connect(lb.listen(SVC))
        s.sendall(http_request(f"/r/{i}"))
        status, _, body = SockReader(s).http_response()
        assert body == b"r%d\n" % i
        s.close()
    reused = bm(lb, "zklb_upstream_connections_reused_total", n.address)
    assert reused >= 25
    # nginx saw few connections: the pool's, not one per client.
    assert n.accepts <= 4, n.stats()
    served = {e[0] for e in n.tls_entries()}
    assert len(served) <= 4


def test_pooled_tls_connection_survives_session_tickets(servers, pki, zklb):
    """A TLS 1.3 server sends session tickets after the handshake; an idle pooled
    connection that received them is still good (not 'unsolicited data')."""
    n = servers("nginx")
    lb = zklb(services={SVC: static_service([n.address], tls=tls_conf(pki, min_version="1.3"),
                                            pool={"reuse": "http1", "prewarm": 1})},
              workers=1)
    wait_until(lambda: bm(lb, "zklb_upstream_idle_connections", n.address) == 1,
               what="a prewarmed connection")
    time.sleep(0.3)     # the tickets arrive and are read while idle
    m = lb.metrics()
    assert (m.value("zklb_upstream_connections_discarded_total", reason="unsolicited_data")
            or 0) == 0
    s = connect(lb.listen(SVC))
    s.sendall(http_request("/r/1"))
    assert SockReader(s).http_response()[2] == b"r1\n"
    s.close()
    assert bm(lb, "zklb_upstream_connections_reused_total", n.address) == 1
    assert n.accepts == 1


def test_sessions_resume(servers, pki, zklb):
    n = servers("nginx")
    lb = zklb(services={SVC: static_service([n.address], tls=tls_conf(pki))}, workers=1)
    for i in range(4):
        assert http_get(lb.listen(SVC), f"/r/{i}")[2] == b"r%d\n" % i
    assert hs(lb, n.address, "full") == 1
    assert hs(lb, n.address, "resumed") == 3
    wait_until(lambda: len(n.tls_entries()) == 4, what="4 requests logged")
    assert [e[2] for e in n.tls_entries()] == [".", "r", "r", "r"]


def test_session_reuse_off_never_resumes(servers, pki, zklb):
    n = servers("nginx")
    lb = zklb(services={SVC: static_service([n.address], tls=tls_conf(
        pki, session_reuse=False))}, workers=1)
    for i in range(3):
        assert http_get(lb.listen(SVC), f"/r/{i}")[2] == b"r%d\n" % i
    assert hs(lb, n.address, "full") == 3
    assert hs(lb, n.address, "resumed") == 0


def test_reload_rereads_the_ca_file(servers, pki, zklb, tmp_path):
    n = servers("nginx")
    ca = tmp_path / "ca-in-use.pem"
    ca.write_bytes(Path(pki.other_ca).read_bytes())
    lb = zklb(services={SVC: static_service([n.address], tls={"ca": str(ca)}, retries=0,
                                            health={"failures_to_eject": 1000})})
    status, _, _ = http_get(lb.listen(SVC), "/r/1")
    assert status is None
    assert hs(lb, n.address, "verify") == 1
    # Same path, new content: the reload loads it; new connections verify with it.
    ca.write_bytes(Path(pki.ca).read_bytes())
    lb.reload()
    wait_until(lambda: http_get(lb.listen(SVC), "/r/2")[2] == b"r2\n", timeout=10,
               what="requests succeed with the new CA")
    assert hs(lb, n.address, "full") >= 1


# ---------------------------------------------------------------------------
# Curator sslPort
# ---------------------------------------------------------------------------


def curator_doc(id_, port, ssl_port):
    return json.dumps({"name": SVC, "id": id_, "address": "127.0.0.1", "port": port,
                       "sslPort": ssl_port, "payload": None,
                       "registrationTimeUTC": int(time.time() * 1000),
                       "serviceType": "DYNAMIC", "uriSpec": None}).encode()


@pytest.mark.zookeeper
def test_curator_ssl_port_routed_with_tls_port_without(shared_zookeeper, zk_path, kazoo_client,
                                                        servers, pki, zklb, backend):
    plain = backend("plain", mode="tag")
    n = servers("nginx")
    k = kazoo_client(shared_zookeeper.hosts)
    k.create(f"{zk_path}/both", curator_doc("both", plain.port, n.port), makepath=True)
    k.create(f"{zk_path}/plain-only", curator_doc("plain-only", plain.port, None))
    zk = {"hosts": shared_zookeeper.hosts, "session_timeout": "2s"}
    disc = {"type": "curator", "path": zk_path}
    lb = zklb(services={
        "web": {"listen": harness.free_addr(), "discovery": disc, "tls": tls_conf(pki)},
        "web-plain": {"listen": harness.free_addr(), "discovery": disc},
    }, zookeeper=zk)
    # With tls: only "both", on its sslPort; "plain-only" skipped and said so.
    wait_until(lambda: [i["id"] for i in lb.instances("web").values()] == ["both"],
               what="tls view")
    inst = list(lb.instances("web").values())[0]
    assert inst["port"] == n.port and inst["ssl_port"] == n.port
    web = harness.services_of(lb.admin_json("/services"))["web"]
    assert web["skipped_instances"] == 1 and web["unroutable_instances"] == 1, web
    assert [(x["node"], x["kind"]) for x in web["skipped"]] == [("plain-only", "unroutable")], web
    lb.wait_for_log(r"node=plain-only not routable: no sslPort, and the service uses tls")
    assert http_get(lb.listen("web"), "/r/3")[2] == b"r3\n"
    # Without tls: both, on their plain port.
    def plain_view():
        return harness.instances_of(lb.services()["web-plain"])
    wait_until(lambda: sorted(i["id"] for i in plain_view()) == ["both", "plain-only"],
               what="plain view")
    assert all(i["port"] == plain.port for i in plain_view())
    tag = harness.ask_tag(lb.listen("web-plain"))
    assert tag == plain.name


# ---------------------------------------------------------------------------
# Active checks
# ---------------------------------------------------------------------------


CHECK = {"interval": "200ms", "timeout": "1s", "rise": 1, "fall": 1}


def test_tcp_check_is_a_tls_handshake(servers, pki, zklb):
    """A tcp check over TLS passes on a completed handshake only: an untrusted
    certificate fails it although the TCP connect succeeds."""
    good = servers("nginx")
    bad = servers("s_server", cert=pki.untrusted[0], key=pki.untrusted[1])
    lb = zklb(services={SVC: static_service([good.address, bad.address], tls=tls_conf(pki),
                                            health={"check": dict(CHECK, type="tcp")})})
    wait_until(lambda: lb.metrics().value("zklb_service_check_failures_total",
                                          service=SVC) >= 3, timeout=10,
               what="three failed checks")
    assert {a: i["state"] for a, i in lb.instances(SVC).items()} == \
        {good.address: "healthy", bad.address: "checking"}
    # Control: the same backend passes a check that ignores the certificate.
    cfg = lb.config
    cfg["services"][SVC]["tls"]["verify"] = False
    lb.reload(cfg)
    wait_until(lambda: lb.instances(SVC)[bad.address]["state"] == "healthy", timeout=10,
               what="verify: false passes")


def test_http_check_runs_over_tls(servers, pki, zklb):
    n = servers("nginx")
    lb = zklb(services={SVC: static_service([n.address], tls=tls_conf(pki),
                                            health={"check": dict(CHECK, type="http",
                                                                  path="/r/42")})})
    wait_until(lambda: any(e[3] == "/r/42" for e in n.tls_entries()), timeout=10,
               what="the http check reaching nginx over TLS")
    wait_until(lambda: lb.instances(SVC)[n.address]["state"] == "healthy", what="healthy")
    assert http_get(lb.listen(SVC), "/r/1")[2] == b"r1\n"


# ---------------------------------------------------------------------------
# Timeouts, backpressure
# ---------------------------------------------------------------------------


def test_idle_timeout_over_tls(servers, pki, zklb):
    srv = servers("s_server", cert=pki.server[0], key=pki.server[1])
    lb = zklb(services={SVC: static_service([srv.address], tls=tls_conf(pki),
                                            idle_timeout="300ms")})
    s = connect(lb.listen(SVC))
    s.sendall(b"abc\n")
    assert SockReader(s).line() == b"cba\n"
    assert harness.closed_within(s, 5.0) is not None
    assert lb.metrics().value("zklb_connections_closed_total", reason="idle_timeout") == 1


def rss_kib(pid):
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise AssertionError("no VmRSS")


def test_backpressure_over_tls_bounds_memory(servers, pki, zklb):
    """A client that stops reading a 16 MiB TLS download: zklb stops reading the
    backend (bounded by max_buffer and one TLS record), then delivers it all."""
    size = 16 << 20
    n = servers("nginx", big_size=size)
    lb = zklb(services={SVC: static_service([n.address], tls=tls_conf(pki),
                                            max_buffer="64k")}, workers=1)
    # Warm up (allocator arenas, TLS context) before measuring.
    assert http_get(lb.listen(SVC), "/r/1")[2] == b"r1\n"
    before = rss_kib(lb.pid)
    s = connect(lb.listen(SVC), timeout=30)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 64 << 10)
    s.sendall(http_request("/big/1", close=True))
    time.sleep(1.5)     # the client reads nothing meanwhile
    grown = rss_kib(lb.pid) - before
    sent = bm(lb, "zklb_backend_bytes_in_total", n.address)
    assert sent < size // 2, f"zklb took {sent} bytes for a client that reads nothing"
    assert grown < 8 << 10, f"zklb RSS grew by {grown} KiB"
    _, _, body = SockReader(s).http_response()
    assert sha256(body) == n.big_sha
    s.close()


def test_drain_lets_an_open_tls_connection_finish(servers, pki, zklb):
    """SIGTERM with a TLS relay open: it keeps working until the client leaves,
    then zklb exits 0."""
    srv = servers("s_server", cert=pki.server[0], key=pki.server[1])
    lb = zklb(services={SVC: static_service([srv.address], tls=tls_conf(pki))},
              drain_timeout="5s")
    addr = lb.listen(SVC)
    s = connect(addr)
    s.sendall(b"one\n")
    rd = SockReader(s)
    assert rd.line() == b"eno\n"
    lb.send_signal(signal.SIGTERM)
    wait_until(lambda: harness.connect_refused(addr), 3, what="new connections refused")
    assert lb.running()
    s.sendall(b"two\n")
    assert rd.line() == b"owt\n"
    s.close()
    assert lb.wait(5) == 0


def test_reload_with_a_broken_ca_file_keeps_the_running_one(servers, pki, zklb, tmp_path):
    n = servers("nginx")
    ca = tmp_path / "ca-in-use.pem"
    ca.write_bytes(Path(pki.ca).read_bytes())
    lb = zklb(services={SVC: static_service([n.address], tls={"ca": str(ca)})})
    assert http_get(lb.listen(SVC), "/r/1")[2] == b"r1\n"
    ca.write_text("-----BEGIN CERTIFICATE-----\nnot base64\n-----END CERTIFICATE-----\n")
    mark = lb.log_mark()
    lb.reload()
    lb.wait_for_log(rf"{re.escape(str(lb.config_path))}:\d+:\d+: services\.web\.tls\.ca: "
                    rf"cannot load {re.escape(str(ca))} as PEM certificates", since=mark)
    assert lb.metrics().value("zklb_reload_failures_total") == 1
    # The context loaded at start still verifies new connections.
    assert http_get(lb.listen(SVC), "/r/2")[2] == b"r2\n"
