"""Listeners under pressure: when accept() fails for lack of file descriptors,
zklb logs it, keeps running, and serves again by itself once descriptors are
free (the listener pauses and re-arms from a timer instead of spinning).

Listeners opened and closed by a reload are in test_reload.py.
"""

import pytest

from harness import ask_tag, static_service, tags, wait_until

SVC = "web"


def test_fd_exhaustion_recovers(backend, zklb):
    b = backend("b1", "tag")
    lb = zklb(services={SVC: static_service([b])}, workers=1, nofile=64)
    addr = lb.listen(SVC)
    mark = lb.log_mark()
    clients = []
    served = 0
    try:
        for _ in range(300):
            try:
                tag, s = ask_tag(addr, timeout=3.0, keep=True)
            except OSError:
                break
            if tag != "b1":
                break
            clients.append(s)
            served += 1
        else:
            pytest.fail("300 connections served with RLIMIT_NOFILE 64: limit not applied?")
        assert served >= 5, f"only {served} connections before exhaustion"
        lb.wait_for_log(r"(?i)EMFILE|too many open files|descriptor", timeout=5, since=mark)
        assert lb.running()
    finally:
        for s in clients:
            s.close()
    wait_until(lambda: ask_tag(addr, timeout=1.0) == "b1", 10,
               what="zklb to serve again after the descriptors came back")
    assert tags(addr, 20) == {"b1": 20}
    assert lb.running()
