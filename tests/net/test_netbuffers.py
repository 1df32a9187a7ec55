"""Socket buffers as asked for, and the kernel's count of datagrams dropped when full."""

from __future__ import annotations

import socket
import sys
import time

import pytest

from telephony_agent.netbuffers import size_buffers, socket_inode, udp_drops

linux_only = pytest.mark.skipif(
    not sys.platform.startswith("linux"), reason="buffer caps and /proc/net/udp are Linux's"
)


def _bound() -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind(("127.0.0.1", 0))
    return sock


@linux_only
def test_a_small_request_is_granted_in_the_units_asked_for() -> None:
    with _bound() as sock:
        sizes = size_buffers(sock, 100_000)
    assert sizes.receive >= 100_000 and sizes.send >= 100_000
    assert not sizes.capped


@linux_only
def test_drops_of_a_full_socket_are_counted() -> None:
    with _bound() as receiver, socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sender:
        receiver.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        inode = socket_inode(receiver)
        assert inode is not None
        assert udp_drops([inode]) == 0
        address = receiver.getsockname()
        for _ in range(500):
            sender.sendto(b"x" * 200, address)
        time.sleep(0.05)
        dropped = udp_drops([inode])
    assert dropped > 100, dropped


def test_no_sockets_no_drops() -> None:
    assert udp_drops([]) == 0
