"""The relay's sockets as the kernel holds them: both sockets of an established
relay have TCP_NODELAY (the client-facing one by inheritance from its listener,
set once per listener; the upstream one set after socket()), with a loopback
backend, whose connect completes inside connect() and is relayed at once.

The test copies zklb's own descriptors into itself with pidfd_getfd(2) (needs
ptrace rights over zklb: root, or the same user with ptrace_scope 0) and asks
them with getsockopt; nothing is inferred from timing.
"""

import ctypes
import os
import socket

import pytest

from harness import connect, echo_roundtrip, static_service

SVC = "web"
SYS_PIDFD_GETFD = 438  # x86_64 and aarch64 alike (the generic syscall table)


def zklb_socket(pid, want):
    """A copy of the TCP socket of process pid for which want(sock) is true, or None."""
    libc = ctypes.CDLL(None, use_errno=True)
    pidfd = os.pidfd_open(pid)
    try:
        for name in os.listdir(f"/proc/{pid}/fd"):
            try:
                if not os.readlink(f"/proc/{pid}/fd/{name}").startswith("socket:"):
                    continue
            except OSError:
                continue
            fd = libc.syscall(SYS_PIDFD_GETFD, pidfd, int(name), 0)
            if fd < 0:
                err = ctypes.get_errno()
                pytest.skip(f"pidfd_getfd: {os.strerror(err)} (needs ptrace rights over zklb)")
            s = socket.socket(fileno=fd)
            try:
                if s.type == socket.SOCK_STREAM and s.family in (socket.AF_INET, socket.AF_INET6) \
                        and want(s):
                    return s
            except OSError:
                pass
            s.close()
    finally:
        os.close(pidfd)
    return None


def peer(s):
    try:
        return s.getpeername()[:2]
    except OSError:
        return None


def test_both_sockets_of_a_relay_have_nodelay(backend, zklb):
    b = backend("b1", "echo")
    lb = zklb(services={SVC: static_service([b])})
    clients = [connect(lb.listen(SVC)) for _ in range(3)]
    try:
        for c in clients:
            assert echo_roundtrip(c, b"ping\n") == b"ping\n"
        for c in clients:
            mine = c.getsockname()[:2]
            front = zklb_socket(lb.proc.pid, lambda s: peer(s) == mine)
            assert front is not None, f"no socket of zklb has {mine} as its peer"
            with front:
                assert front.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY) != 0
        ups = []
        while len(ups) < len(clients):
            seen = {u.getsockname()[:2] for u in ups}
            u = zklb_socket(lb.proc.pid, lambda s: peer(s) == b.addr and s.getsockname()[:2] not in seen)
            assert u is not None, f"{len(ups)} upstream sockets to {b.addr}, want {len(clients)}"
            ups.append(u)
        for u in ups:
            with u:
                assert u.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY) != 0
    finally:
        for c in clients:
            c.close()
