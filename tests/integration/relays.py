"""The relays under test, as fixtures: a test module that imports `relay` and
`zklb` from here runs each of its tests against every relay (`relay:`):

- user: the worker copies the bytes;
- kernel: the BPF sockmap relays them; the test fails unless /services and
  /metrics say the kernel took connections;
- auto: the kernel relay pairing a connection mid-stream, once it has shown
  it stays (whether a given test's connections get there is up to timing:
  the test checks the bytes, not the count);
- fallback: relay: kernel where BPF is refused (ZKLB_KRELAY=off makes the
  load fail): the connections are relayed in user space and counted as
  fallbacks.
"""

import pytest

RELAYS = {
    "user": ({"relay": "user"}, {}),
    "kernel": ({"relay": "kernel"}, {}),
    "auto": ({"relay": "auto"}, {}),
    "fallback": ({"relay": "kernel"}, {"ZKLB_KRELAY": "off"}),
}


@pytest.fixture(params=list(RELAYS))
def relay(request):
    """The relay under test: user, kernel or fallback."""
    return request.param


def may_fall_back(test):
    """Mark a test whose connections the kernel relay may all refuse: a socket
    that already has its peer's FIN cannot enter a sockmap."""
    test.may_fall_back = True
    return test


@pytest.fixture
def zklb(zklb, relay, request):
    """conftest's zklb with the top-level relay: of the relay under test; at the
    end, every connection of every zklb went the way that relay must send it."""
    top, env = RELAYS[relay]
    made = []

    def make(*args, **kw):
        for k, v in top.items():
            kw.setdefault(k, v)
        kw["env"] = {**env, **(kw.get("env") or {})}
        z = zklb(*args, **kw)
        made.append(z)
        return z

    yield make
    for z in made:
        if z.proc is None or z.proc.poll() is not None:
            continue
        check_relay_counts(z, relay, getattr(request.function, "may_fall_back", False))


def check_relay_counts(z, relay, may_fall_back=False):
    """/services and /metrics say which relay carried the connections. A client
    that sent its FIN before the upstream connected cannot enter the sockmap
    (only established sockets can): it falls back, so kernel asks for one
    kernel-relayed connection at least, not for all."""
    m = z.metrics()
    for name, svc in z.services().items():
        r = svc["relay"]
        kernel = m.value("zklb_service_kernel_relays_total", service=name)
        fallbacks = m.value("zklb_service_kernel_fallbacks_total", service=name)
        established = r["kernel_connections"] + r["kernel_fallbacks"]
        assert (r["kernel_connections"], r["kernel_fallbacks"]) == (kernel, fallbacks)
        if relay == "user":
            assert (r["mode"], r["in_use"], kernel, fallbacks) == ("user", "user", 0, 0)
        elif relay == "kernel":
            assert (r["mode"], r["in_use"]) == ("kernel", "kernel"), r
            assert m.value("zklb_kernel_relay_available") == 1
            assert kernel >= 1 or established == 0 or may_fall_back, r
        elif relay == "auto":
            assert (r["mode"], r["in_use"]) == ("auto", "kernel"), r
        else:
            assert (r["mode"], r["in_use"], kernel) == ("kernel", "user", 0), r
            assert m.value("zklb_kernel_relay_available") == 0
