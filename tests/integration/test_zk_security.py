"""A secured ZooKeeper: digest authentication enforced by the server, the ACLs
zklb gives what it announces, and a registration rewritten by someone else.

The ZooKeeper here is Debian's 3.8 with `enforce.auth.enabled=true` and the
digest provider: a session without credentials is closed at its first request.
kazoo, with its own digest identities, is the independent client that reads
back the ACLs and tries to delete, rewrite and register beside zklb. Every wait
is a poll with a deadline.
"""

import json
import os
import re

import pytest
from kazoo.exceptions import NoAuthError
from kazoo.security import make_digest_acl_credential

import harness
from harness import free_addr, zk_section

pytestmark = pytest.mark.zookeeper

USER, SECRET = "zklb", "s3cret-zklb"
OTHER, OTHER_SECRET = "other", "s3cret-other"
ENFORCE = {
    "enforce.auth.enabled": "true",
    "enforce.auth.schemes": "digest",
    "authProvider.1": "org.apache.zookeeper.server.auth.DigestAuthenticationProvider",
}
PERM_READ, PERM_CREATE, PERM_ALL = 1, 4, 31


@pytest.fixture(scope="module")
def secured_zookeeper(tmp_path_factory):
    """One ZooKeeper enforcing digest authentication for this module's tests
    (each uses its own base path)."""
    zk = harness.ZooKeeper(tmp_path_factory.mktemp("secured-zookeeper"), extra=ENFORCE)
    try:
        zk.start()
        yield zk
    finally:
        zk.cleanup()


@pytest.fixture
def digest_client(kazoo_client):
    """digest_client(hosts, user, secret) → a started kazoo client with that identity."""
    return lambda hosts, user, secret: kazoo_client(hosts, [("digest", f"{user}:{secret}")])


def secret_file(tmp_path, text, mode=0o600):
    path = tmp_path / "zk-secret"
    path.write_text(text)
    path.chmod(mode)
    return path


def announce_entry(service, base, port, **extra):
    e = {"service": service, "base_path": base, "address": "127.0.0.1", "port": port,
         "check": {"type": "tcp", "interval": "100ms", "timeout": "200ms", "rise": 1,
                   "fall": 2}}
    e.update(extra)
    return e


def one_child(k, path, timeout=10.0):
    def get():
        try:
            kids = k.get_children(path)
        except Exception:  # noqa: BLE001 - NoNodeError while the parent is missing
            return None
        return kids if len(kids) == 1 else None
    return harness.wait_until(get, timeout, interval=0.02, what=f"one child under {path}")[0]


def acl_set(acls):
    return {(a.perms, a.id.scheme, a.id.id) for a in acls}


def test_auth_acls_and_neighbours(secured_zookeeper, digest_client, backend, zklb, tmp_path):
    """With auth_file, zklb discovers and announces through an ensemble that
    enforces authentication; its node is creator-all + world-read, the parents it
    made let another identity register beside it, and that identity can neither
    delete nor rewrite zklb's node. The secret appears in no log line and not in
    /services."""
    zk = secured_zookeeper
    base = "/acl/services"
    b1 = backend("b1", mode="tag")
    secret = secret_file(tmp_path, f"digest:{USER}:{SECRET}\n")
    z = zklb(services={"web": {"listen": free_addr(), "connect_timeout": "1s",
                               "discovery": {"type": "curator", "path": base + "/web"}}},
             zookeeper=zk_section(zk, auth_file=str(secret)),
             announce=[announce_entry("web", base, b1.port)])

    mine = digest_client(zk.hosts, USER, SECRET)
    node_id = one_child(mine, base + "/web")
    node = f"{base}/web/{node_id}"
    # discovery works through the same authenticated session
    harness.wait_until(lambda: len(z.instances("web")) == 1, 10, what="web discovered")

    ident = make_digest_acl_credential(USER, SECRET)
    acls, _ = mine.get_acls(node)
    assert acl_set(acls) == {(PERM_ALL, "digest", ident), (PERM_READ, "world", "anyone")}
    for parent in ("/acl", base, base + "/web"):
        acls, _ = mine.get_acls(parent)
        assert acl_set(acls) == {(PERM_ALL, "digest", ident),
                                 (PERM_READ | PERM_CREATE, "world", "anyone")}, parent

    other = digest_client(zk.hosts, OTHER, OTHER_SECRET)
    data, stat = other.get(node)            # world-read: consumers still read it
    assert json.loads(data)["port"] == b1.port
    with pytest.raises(NoAuthError):
        other.delete(node)
    with pytest.raises(NoAuthError):
        other.set(node, b"{}")
    other.create(f"{base}/web/beside", b"{}", ephemeral=True)
    assert sorted(other.get_children(base + "/web")) == sorted([node_id, "beside"])
    assert mine.get(node)[1].version == stat.version

    status, _, body = z.admin_get("/services")
    assert status == 200
    for text in (body.decode(), z.log()):
        assert SECRET not in text


def test_rewritten_registration_is_restored(secured_zookeeper, digest_client, backend, zklb):
    """A client with zklb's own identity rewrites the node: zklb puts its
    registration back within a bounded wait, logs it and counts it once."""
    zk = secured_zookeeper
    base = "/rewrite/services"
    b1 = backend("b1", mode="tag")
    z = zklb(services={}, zookeeper=zk_section(zk, auth=f"digest:{USER}:{SECRET}"),
             announce=[announce_entry("web", base, b1.port)])
    k = digest_client(zk.hosts, USER, SECRET)
    node = f"{base}/web/{one_child(k, base + '/web')}"
    z.wait_for_log(r"announce svc=web id=\S+: registered")
    original, stat = k.get(node)

    k.set(node, b'{"port": 1}')
    harness.wait_until(lambda: k.get(node)[0] == original, 5, interval=0.02,
                       what="the registration restored")
    assert k.get(node)[1].ephemeralOwner == stat.ephemeralOwner
    z.wait_for_log(r"was rewritten by another client .*restoring our registration")
    z.wait_for_log(r"restored the registration at " + re.escape(node))
    assert z.metrics().value("zklb_announce_restored_total", service="web") == 1
    # our own write back is not taken for another rewrite
    assert z.metrics().value("zklb_announce_restored_total", service="web") == 1


@pytest.mark.parametrize("auth,why", [
    (None, "the ensemble enforces authentication and zookeeper.auth is not set"),
    ("nosuch:x", "the ensemble refused the credentials of zookeeper.auth"),
])
def test_auth_failure_at_start_is_fatal(secured_zookeeper, zklb, auth, why):
    """Credentials the ensemble refuses, or none where it requires some: exit
    status 1 with the reason, not a retry loop."""
    section = zk_section(secured_zookeeper)
    if auth:
        section["auth"] = auth
    z = zklb(services={"web": {"listen": free_addr(),
                               "discovery": {"type": "curator", "path": "/fatal/web"}}},
             zookeeper=section, start=False)
    z.start(wait=False)
    assert z.wait(15) == 1
    log = z.log()
    assert f"fatal configuration error: zookeeper.auth: {why}; exiting" in log
    assert len(re.findall(r"zookeeper: authentication failed", log)) == 1
    if auth:
        assert "nosuch:x" not in log and ":x" not in log.replace("nosuch", "")


def test_auth_required_later_is_loud_and_counted(tmp_path, kazoo_client, backend, zklb):
    """An ensemble that starts enforcing authentication after zklb's start is
    not a configuration error: each refusal is an error line and a count, and
    zklb keeps serving what it knew."""
    zk = harness.ZooKeeper(tmp_path / "zookeeper")
    try:
        zk.start()
        b1 = backend("b1", mode="tag")
        k = kazoo_client(zk.hosts)
        k.create("/later/web/i1", json.dumps({
            "name": "web", "id": "i1", "address": "127.0.0.1", "port": b1.port,
            "sslPort": None, "payload": None, "registrationTimeUTC": 0,
            "serviceType": "DYNAMIC", "uriSpec": None}).encode(), makepath=True)
        z = zklb(services={"web": {"listen": free_addr(),
                                   "discovery": {"type": "curator", "path": "/later/web"}}},
                 zookeeper=zk_section(zk))
        harness.wait_until(lambda: len(z.instances("web")) == 1, 10, what="web discovered")
        k.stop()
        # the same server, now enforcing authentication
        with open(zk.cfg_path, "a") as f:
            f.write("".join(f"{key}={value}\n" for key, value in ENFORCE.items()))
        zk.restart()
        harness.wait_until(
            lambda: (z.metrics().value("zklb_zookeeper_auth_failures_total") or 0) >= 1,
            20, what="an authentication failure counted")
        assert z.running()
        assert "fatal configuration error" not in z.log()
        z.wait_for_log(r"zookeeper: authentication failed \(scheme none\): the ensemble "
                       r"enforces authentication and zookeeper.auth is not set; a new "
                       r"session follows after backoff")
        assert len(z.instances("web")) == 1
    finally:
        zk.cleanup()


def test_auth_file_refused_when_readable_by_others(tmp_path, zklb, secured_zookeeper):
    """zklb check (and the start) refuse a secret file others may read."""
    secret = secret_file(tmp_path, f"digest:{USER}:{SECRET}\n", mode=0o644)
    z = zklb(services={}, zookeeper=zk_section(secured_zookeeper, auth_file=str(secret)),
             start=False)
    r = harness.run_zklb(["check", "-c", str(z.config_path)])
    assert r.returncode != 0
    assert (f"zookeeper.auth_file: {secret} is readable by group or other (mode 0644); "
            f"chmod 600 it") in r.stderr
    assert SECRET not in r.stderr + r.stdout
    os.chmod(secret, 0o600)
    r = harness.run_zklb(["check", "-c", str(z.config_path)])
    assert r.returncode == 0, r.stderr


# ---------------------------------------------------------------------------
# TLS to the ensemble: a secureClientPort (Netty) with certificates made here;
# zklb reaches it through its loopback tunnel (zookeeper.tls).
# ---------------------------------------------------------------------------


@pytest.fixture(scope="module")
def tls_zookeeper(tmp_path_factory):
    """(ZooKeeper serving TLS on secure_port and requiring a client certificate, Pki)."""
    from test_tls import Pki  # the certificates test_tls.py makes with openssl

    pki = Pki(tmp_path_factory.mktemp("zk-pki"))
    d = tmp_path_factory.mktemp("tls-zookeeper")
    cert, key = pki.server
    keystore = d / "keystore.pem"
    keystore.write_text(cert.read_text() + key.read_text())
    keystore.chmod(0o600)
    zk = harness.ZooKeeper(d / "zk", tls=(keystore, pki.ca, "need"))
    try:
        zk.start()
        yield zk, pki
    finally:
        zk.cleanup()


def tls_section(zk, pki, ca=None):
    cert, key = pki.client
    return zk_section(zk, hosts=zk.secure_hosts,
                      tls={"ca": str(ca or pki.ca), "cert": str(cert), "key": str(key)})


def test_tls_discovery_announce_and_sync(tls_zookeeper, kazoo_client, backend, zklb, tmp_path):
    """Only the TLS port is given: discovery, announce and sync all work through
    the tunnel, and its handshakes are counted."""
    zk, pki = tls_zookeeper
    base = "/tls/services"
    b1 = backend("b1", mode="tag")
    k = kazoo_client(zk.hosts)
    k.create("/tls/conf", b"through tls\n", makepath=True)
    out = tmp_path / "conf.out"
    z = zklb(services={"web": {"listen": free_addr(), "connect_timeout": "1s",
                               "discovery": {"type": "curator", "path": base + "/web"}}},
             zookeeper=tls_section(zk, pki),
             announce=[announce_entry("web", base, b1.port)],
             sync=[{"path": "/tls/conf", "file": str(out)}])
    z.wait_for_log(r"zookeeper: TLS to 127\.0\.0\.1:%d through the loopback endpoints "
                   r"127\.0\.0\.1:\d+" % zk.secure_port)
    node_id = one_child(k, base + "/web")
    assert json.loads(k.get(f"{base}/web/{node_id}")[0])["port"] == b1.port
    harness.wait_until(lambda: len(z.instances("web")) == 1, 10, what="web discovered")
    harness.wait_until(lambda: out.exists() and out.read_bytes() == b"through tls\n", 10,
                       what="the node synced")
    m = z.metrics()
    assert m.value("zklb_zookeeper_tls_handshakes_total") >= 1
    assert m.value("zklb_zookeeper_tls_handshake_failures_total") == 0
    assert m.value("zklb_zookeeper_connected") == 1


def test_tls_wrong_ca_is_refused_and_counted(tls_zookeeper, zklb):
    """A member whose chain does not end in zookeeper.tls.ca is never talked to:
    the handshake is refused, logged with the reason and counted; no session."""
    zk, pki = tls_zookeeper
    z = zklb(services={}, zookeeper=tls_section(zk, pki, ca=pki.other_ca))
    harness.wait_until(
        lambda: (z.metrics().value("zklb_zookeeper_tls_handshake_failures_total") or 0) >= 1,
        15, what="a refused handshake counted")
    z.wait_for_log(r"zookeeper tls: 127\.0\.0\.1:%d: TLS handshake refused: .*verif"
                   % zk.secure_port)
    m = z.metrics()
    assert m.value("zklb_zookeeper_tls_handshakes_total") == 0
    assert m.value("zklb_zookeeper_sessions_total") == 0
    assert m.value("zklb_zookeeper_connected") == 0
