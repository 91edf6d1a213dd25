"""Demo backends and a burst client, for tests/demo (loopback only).

    python3 demo_backend.py serve --port 19001 --name "backend 1"
        HTTP/1.1 server on 127.0.0.1:PORT answering every request with
        "hello from backend 1"; prints "ready 127.0.0.1:PORT" once listening.

    python3 demo_backend.py burst --target 127.0.0.1:18080 --connections 300
        CONNECTIONS HTTP requests, one per connection (Connection: close), a few
        at a time; prints how many answers came from each backend. Exit 1 if any
        request failed.

    python3 demo_backend.py register --zk 127.0.0.1:2181 --path /services/demo \
            --port 19001 --port 19002
        Registers one Curator ServiceInstance per port (ids backend-1, backend-2,
        ...) as ephemeral nodes, as Curator's ServiceDiscovery would, prints
        "registered N", and holds the ZooKeeper session until SIGTERM.

    python3 demo_backend.py deregister --zk 127.0.0.1:2181 --path /services/demo --id backend-2
        Deletes one registered instance (what a registrar does on shutdown).

Bounded: every socket operation has a timeout and burst has an overall deadline.
"""

import argparse
import socket
import sys
import threading
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


def serve(port, name, host="127.0.0.1"):
    body = f"hello from {name}\n".encode()

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        timeout = 30

        def do_GET(self):
            self.send_response(200)
            self.send_header("Content-Type", "text/plain")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        do_HEAD = do_GET

        def log_message(self, fmt, *args):
            pass

    class Server(ThreadingHTTPServer):
        daemon_threads = True
        allow_reuse_address = True
        request_queue_size = 1024

    srv = Server((host, port), Handler)
    print(f"ready {host}:{srv.server_address[1]}", flush=True)
    try:
        srv.serve_forever(poll_interval=0.2)
    except KeyboardInterrupt:
        pass
    finally:
        srv.server_close()


def one_request(host, port, timeout):
    with socket.create_connection((host, port), timeout=timeout) as s:
        s.settimeout(timeout)
        s.sendall(b"GET / HTTP/1.1\r\nHost: demo\r\nConnection: close\r\n\r\n")
        data = b""
        while True:
            chunk = s.recv(4096)
            if not chunk:
                break
            data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    if not head.startswith(b"HTTP/1.1 200"):
        raise ValueError(f"unexpected reply {data[:80]!r}")
    text = body.decode(errors="replace").strip()
    return text.removeprefix("hello from ")


def burst(target, connections, concurrency=8, timeout=5.0, deadline_s=120.0):
    host, _, port = target.rpartition(":")
    port = int(port)
    counts = Counter()
    errors = Counter()
    lock = threading.Lock()
    deadline = time.monotonic() + deadline_s

    def work(_):
        if time.monotonic() > deadline:
            with lock:
                errors["deadline passed"] += 1
            return
        try:
            who = one_request(host, port, timeout)
            with lock:
                counts[who] += 1
        except (OSError, ValueError) as e:
            with lock:
                errors[type(e).__name__] += 1

    t0 = time.monotonic()
    with ThreadPoolExecutor(concurrency) as ex:
        list(ex.map(work, range(connections)))
    took = time.monotonic() - t0
    ok = sum(counts.values())
    print(f"{ok} of {connections} requests answered in {took:.2f}s "
          f"({concurrency} at a time):")
    for who in sorted(counts):
        print(f"  {counts[who]:5d}  from {who}")
    for what, n in sorted(errors.items()):
        print(f"  {n:5d}  failed: {what}")
    return 0 if not errors else 1


def curator_instance(service, iid, port):
    """The JSON Curator 5 writes for a ServiceInstance (no `enabled` field)."""
    import json
    return json.dumps({
        "name": service, "id": iid, "address": "127.0.0.1", "port": port,
        "sslPort": None, "payload": None,
        "registrationTimeUTC": int(time.time() * 1000),
        "serviceType": "DYNAMIC", "uriSpec": None,
    }).encode()


def register(zk_hosts, path, ports):
    import signal
    from kazoo.client import KazooClient
    zk = KazooClient(hosts=zk_hosts, timeout=10)
    zk.start(timeout=15)
    service = path.rstrip("/").rsplit("/", 1)[-1]
    for i, port in enumerate(ports, 1):
        zk.create(f"{path}/backend-{i}", curator_instance(service, f"backend-{i}", port),
                  ephemeral=True, makepath=True)
    print(f"registered {len(ports)}", flush=True)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    stop.wait(3600)        # bounded: the demo stops us long before
    zk.stop()
    zk.close()
    return 0


def deregister(zk_hosts, path, iid):
    from kazoo.client import KazooClient
    zk = KazooClient(hosts=zk_hosts, timeout=10)
    zk.start(timeout=15)
    zk.delete(f"{path}/{iid}")
    zk.stop()
    zk.close()
    return 0


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    s = sub.add_parser("serve")
    s.add_argument("--port", type=int, required=True)
    s.add_argument("--name", required=True)
    s.add_argument("--host", default="127.0.0.1")
    b = sub.add_parser("burst")
    b.add_argument("--target", required=True)
    b.add_argument("--connections", type=int, default=300)
    b.add_argument("--concurrency", type=int, default=8)
    r = sub.add_parser("register")
    r.add_argument("--zk", required=True)
    r.add_argument("--path", required=True)
    r.add_argument("--port", type=int, action="append", required=True)
    d = sub.add_parser("deregister")
    d.add_argument("--zk", required=True)
    d.add_argument("--path", required=True)
    d.add_argument("--id", required=True)
    a = ap.parse_args(argv)
    if a.cmd == "register":
        return register(a.zk, a.path, a.port)
    if a.cmd == "deregister":
        return deregister(a.zk, a.path, a.id)
    if a.cmd == "serve":
        if not a.host.startswith("127.") and a.host != "::1":
            ap.error("demo backends listen on loopback only")
        serve(a.port, a.name, a.host)
        return 0
    return burst(a.target, a.connections, a.concurrency)


if __name__ == "__main__":
    sys.exit(main())
