"""The admin API seen from outside, after real traffic: /healthz, the HTML page,
404 for anything else, per-backend counters in /metrics (connections, bytes
each way, connect failures, active connections) and the same figures in
/services' instances.
"""

import harness
from harness import (METRIC, backend_labels, connect, echo_roundtrip, instance_address,
                     instances_of, random_bytes, static_service, stream, wait_until)

SVC = "web"


def test_admin_endpoints(backend, closed_port, zklb):
    good = backend("good", "echo")
    dead = closed_port()
    lb = zklb(services={SVC: static_service([good, dead], balance="round_robin",
                                            retries=2)})
    addr = lb.listen(SVC)
    payload = random_bytes(1000, seed=11)
    for _ in range(10):
        assert stream(addr, payload) == payload

    status, headers, body = lb.admin_get("/healthz")
    assert status == 200 and body.strip() == b"ok"

    status, headers, body = lb.admin_get("/")
    assert status == 200 and "text/html" in headers.get("content-type", "")
    assert SVC.encode() in body

    assert lb.admin_get("/no-such-page")[0] == 404

    def settled():
        m = lb.metrics()
        return m.value(METRIC["active"], **backend_labels(SVC, good)) == 0 and m
    m = wait_until(settled, 5, what=f"{METRIC['active']} of {good.address} to reach 0")
    lab = backend_labels(SVC, good)
    assert m.value(METRIC["total"], **lab) == 10, m.names()
    assert m.value(METRIC["bytes_in"], **lab) == 10 * len(payload)
    assert m.value(METRIC["bytes_out"], **lab) == 10 * len(payload)
    assert m.value(METRIC["connect_failures"], **backend_labels(SVC, dead)) >= 1

    held = [connect(addr) for _ in range(3)]
    for s in held:
        assert echo_roundtrip(s) == b"ping\n"
    assert lb.metrics().value(METRIC["active"], **lab) == 3

    svc = lb.services()[SVC]
    assert svc["listen"] == lb.config["services"][SVC]["listen"]
    insts = {instance_address(i): i for i in instances_of(svc)}
    assert set(insts) == {good.address, dead.address}
    for i in insts.values():
        assert {"id", "address", "port", "state", "active", "total", "failures"} <= set(i)
        assert i["state"] in harness.INSTANCE_STATES
    assert insts[good.address]["total"] == 13
    assert insts[good.address]["active"] == 3
    assert insts[good.address]["state"] == "healthy"
    assert insts[dead.address]["failures"] >= 1
    for s in held:
        s.close()
