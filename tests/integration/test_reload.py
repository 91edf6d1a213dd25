"""SIGHUP reload: new backends apply without refusing a connect or cutting an
open connection (same process, same listening sockets); services added and
removed open and close their listeners; a file that does not parse or does not
validate keeps the running configuration, logs FILE:LINE:COL: and leaves the
reload path working.

Reloads that change announce: entries are in test_announce.py; SIGHUP with a
ZooKeeper overlay in force is in test_overlay.py.
"""

import re
import socket
import threading
import time

import pytest

import harness
from harness import ask_tag, connect_refused, echo_roundtrip, static_service, tags, wait_until

SVC = "web"


def _refusal_watch(addr, stop, refused):
    """Connect to addr in a loop until stop is set; record refused connects."""
    while not stop.is_set():
        try:
            s = socket.create_connection(addr, timeout=2)
            s.close()
        except ConnectionRefusedError:
            refused.append(time.monotonic())
        except OSError:
            pass
        time.sleep(0.005)


def test_reload_keeps_connections_and_applies_backends(backend, zklb):
    b1 = backend("b1", "tag")
    b2 = backend("b2", "tag")
    lb = zklb(services={SVC: static_service([b1])})
    addr = lb.listen(SVC)
    tag, old = ask_tag(addr, keep=True)
    assert tag == "b1"
    pid = lb.pid
    stop, refused = threading.Event(), []
    watcher = threading.Thread(target=_refusal_watch, args=(addr, stop, refused))
    watcher.start()
    try:
        cfg = dict(lb.config)
        cfg["services"] = {SVC: dict(cfg["services"][SVC],
                                     discovery={"type": "static",
                                                "backends": [b2.address]})}
        lb.reload(cfg)
        wait_until(lambda: ask_tag(addr) == "b2", 5, what="new connections to go to b2")
        assert tags(addr, 20) == {"b2": 20}
    finally:
        stop.set()
        watcher.join(5)
    assert not refused, f"{len(refused)} connects refused during reload"
    assert lb.running() and lb.pid == pid
    assert echo_roundtrip(old) == b"ping\n", "connection opened before reload was cut"
    old.close()


def test_reload_adds_and_removes_listeners(backend, zklb):
    b1 = backend("b1", "tag")
    b2 = backend("b2", "tag")
    lb = zklb(services={"one": static_service([b1])})
    one = lb.listen("one")
    cfg = dict(lb.config)
    cfg["services"] = {"two": static_service([b2])}
    lb.reload(cfg)
    two = lb.listen("two")
    wait_until(lambda: ask_tag(two) == "b2", 5, what="the new service's listener")
    wait_until(lambda: connect_refused(one), 5, what="the removed service's listener to close")
    assert lb.running()


BROKEN_RELOADS = {
    # YAML that does not parse.
    "syntax": lambda text: text.replace("services:\n", "services:\n  web2: [\n"),
    # YAML that parses but does not validate.
    "unknown-key": lambda text: text.replace("services:\n", "services:\n  web2:\n"
                                             "    no_such_setting: 1\n"),
}


@pytest.mark.parametrize("breakage", sorted(BROKEN_RELOADS))
def test_invalid_reload_keeps_old_config(backend, zklb, breakage):
    b1 = backend("b1", "tag")
    b2 = backend("b2", "tag")
    lb = zklb(services={SVC: static_service([b1])})
    addr = lb.listen(SVC)
    good_cfg = lb.config
    mark = lb.log_mark()
    lb.reload(BROKEN_RELOADS[breakage](harness.to_yaml(good_cfg)))
    # The reason is logged as FILE:LINE:COL: message.
    lb.wait_for_log(rf"{re.escape(str(lb.config_path))}:\d+:\d+: ", timeout=5, since=mark)
    time.sleep(0.3)
    assert lb.running(), "zklb exited on an invalid reload"
    assert tags(addr, 10) == {"b1": 10}
    assert lb.admin_get("/healthz")[0] == 200
    # The reload path still works afterwards.
    cfg = dict(good_cfg)
    cfg["services"] = {SVC: dict(good_cfg["services"][SVC],
                                 discovery={"type": "static", "backends": [b2.address]})}
    lb.reload(cfg)
    wait_until(lambda: ask_tag(addr) == "b2", 5, what="valid reload after an invalid one")
