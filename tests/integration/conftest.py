"""Fixtures for zklb's integration tests. See harness.py for the objects.

    def test_example(backend, zklb):
        b1 = backend("b1", mode="tag")
        lb = zklb(services={"web": static_service([b1], retries=1)})
        assert ask_tag(lb.listen("web")) == "b1"

Everything a fixture starts is stopped at teardown by PID; a zklb whose log holds a
sanitizer report fails the test; a failed test shows the tail of every zklb log.
"""

import atexit
import os
import shutil
import signal
import subprocess

import pytest

import harness
from harness import (Backend, Blackhole, ClosedPort, DnsServer, Ensemble, Zklb, ZooKeeper,
                     zklb_config)


def pytest_configure(config):
    config.addinivalue_line("markers", "zookeeper: needs a real ZooKeeper (Java)")
    config.addinivalue_line("markers", "slow: takes more than a few seconds")
    harness.raise_nofile()
    # If the session is stopped from outside (tests/run's time bound sends SIGTERM),
    # teardown may not run: kill what the harness started, then exit.
    def on_term(signum, frame):
        harness.kill_tracked()
        os._exit(128 + signum)
    signal.signal(signal.SIGTERM, on_term)
    atexit.register(harness.kill_tracked)


@pytest.hookimpl(hookwrapper=True, tryfirst=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    rep = outcome.get_result()
    setattr(item, "rep_" + rep.when, rep)


def _failed(request):
    rep = getattr(request.node, "rep_call", None)
    return rep is None or rep.failed


@pytest.fixture
def workdir(tmp_path):
    """A per-test scratch directory (pytest's tmp_path)."""
    return tmp_path


@pytest.fixture
def free_addr():
    """free_addr() → '127.0.0.1:PORT' nobody listens on yet."""
    return harness.free_addr


@pytest.fixture
def backend():
    """backend(name='b1', mode='echo', port=0) → a started Backend (stopped at teardown)."""
    made = []

    def make(name="b1", mode="echo", **kw):
        b = Backend(name, mode, **kw).start()
        made.append(b)
        return b

    yield make
    for b in made:
        b.stop()


@pytest.fixture
def closed_port():
    """closed_port() → a ClosedPort (connects refused at once)."""
    made = []

    def make():
        c = ClosedPort()
        made.append(c)
        return c

    yield make
    for c in made:
        c.close()


@pytest.fixture
def dns(tmp_path):
    """A DnsServer and a resolv.conf naming it: zklb(..., resolv_conf=dns.resolv_conf).
    Needs root (port 53, a mount namespace), as CI has."""
    if os.geteuid() != 0 or not shutil.which("unshare"):
        pytest.skip("needs root and unshare(1) for a private resolv.conf")
    probe = subprocess.run(["unshare", "--mount", "sh", "-c",
                            'mount --bind "$0" /etc/resolv.conf', "/etc/resolv.conf"],
                           capture_output=True, text=True, timeout=10)
    if probe.returncode != 0:
        # A container without CAP_SYS_ADMIN: say so (the summary counts skips).
        pytest.skip(f"no mount namespace here: {probe.stderr.strip()[:200]}")
    d = DnsServer()
    d.resolv_conf = d.write_resolv_conf(tmp_path / "resolv.conf")
    yield d
    d.stop()


@pytest.fixture
def blackhole():
    """blackhole() → a Blackhole (connects hang)."""
    made = []

    def make():
        b = Blackhole()
        made.append(b)
        return b

    yield make
    for b in made:
        b.close()


@pytest.fixture
def zklb(tmp_path, request):
    """zklb(config=None, *, services=None, start=True, nofile=None, **top) → Zklb.

    Either a whole config (dict, or YAML text with an admin.listen), or services=
    (a dict of service configs, e.g. from static_service()) completed by
    zklb_config() with a free admin port and **top as top-level keys.
    """
    made = []

    def make(config=None, *, services=None, start=True, nofile=None, env=None,
             args=None, name=None, resolv_conf=None, **top):
        if config is None:
            config = zklb_config(services or {}, workdir=tmp_path, **top)
        name = name or ("zklb" if not made else f"zklb{len(made) + 1}")
        z = Zklb(config, tmp_path / name, nofile=nofile, env=env, args=args, name=name,
                 resolv_conf=resolv_conf)
        made.append(z)
        if start:
            z.start()
        return z

    yield make
    problems = []
    for z in made:
        z.cleanup()
        report = z.sanitizer_report()
        if report:
            problems.append(f"sanitizer report in {z.log_path}:\n{report}")
        if _failed(request) and z.log_path.exists():
            print(f"\n--- tail of {z.log_path} (pid {z.pid}, exit {z.returncode}) ---")
            print(z.log_tail(80))
    if problems:
        pytest.fail("\n\n".join(problems), pytrace=False)


def _need_java():
    if not shutil.which("java") or not os.path.exists("/usr/share/java/zookeeper.jar"):
        pytest.fail("ZooKeeper needs java and Debian's zookeeper package: run tests/deps")


@pytest.fixture
def zookeeper(tmp_path):
    """A fresh standalone ZooKeeper for this test (stop/kill/restart allowed)."""
    _need_java()
    zk = ZooKeeper(tmp_path / "zookeeper")
    try:
        zk.start()
        yield zk
    finally:
        zk.cleanup()


@pytest.fixture(scope="session")
def shared_zookeeper(tmp_path_factory):
    """One standalone ZooKeeper for the whole session: never stop it in a test;
    use a per-test znode path (see zk_path)."""
    _need_java()
    zk = ZooKeeper(tmp_path_factory.mktemp("shared-zookeeper"))
    try:
        zk.start()
        yield zk
    finally:
        zk.cleanup()


@pytest.fixture
def zk_path(request):
    """A znode path unique to this test, for use with shared_zookeeper."""
    return "/t/" + request.node.name.replace("[", "_").replace("]", "").replace("/", "_")


@pytest.fixture
def ensemble(tmp_path):
    """A running 3-node ZooKeeper ensemble (kill_leader() etc.)."""
    _need_java()
    e = Ensemble(tmp_path / "ensemble")
    try:
        e.start()
        yield e
    finally:
        e.cleanup()


@pytest.fixture
def observed_ensemble(tmp_path):
    """A running ensemble of 3 voters and 1 observer (.observer_hosts: the observer's
    connect string)."""
    _need_java()
    e = Ensemble(tmp_path / "ensemble", size=3, observers=1)
    try:
        e.start()
        yield e
    finally:
        e.cleanup()


def _kazoo(hosts, auth_data=None):
    from kazoo.client import KazooClient

    c = KazooClient(hosts=hosts, timeout=10.0, auth_data=auth_data,
                    connection_retry={"max_tries": -1, "max_delay": 1.0})
    c.start(timeout=15)
    return c


@pytest.fixture
def zk_client(zookeeper):
    """A started kazoo client of the `zookeeper` fixture."""
    c = _kazoo(zookeeper.hosts)
    try:
        yield c
    finally:
        c.stop()
        c.close()


@pytest.fixture
def kazoo_client():
    """kazoo_client(hosts, auth_data=None) → a started kazoo client, stopped at
    teardown; auth_data as kazoo's, e.g. [("digest", "user:secret")]."""
    made = []

    def make(hosts, auth_data=None):
        c = _kazoo(hosts, auth_data)
        made.append(c)
        return c

    yield make
    for c in made:
        try:
            c.stop()
            c.close()
        except Exception:  # noqa: BLE001
            pass
