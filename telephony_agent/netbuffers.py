"""UDP socket buffers: sized for bursts, and the kernel's count of what they dropped.

Why: a UDP socket keeps the kernel's default receive buffer (about 208 KB on Linux,
where every small datagram costs a couple of KB of it), and whatever arrives while
it is full is dropped without a trace. Under a burst of SIP traffic the event loop
falls behind for a moment, and 1,242 datagrams (a liveness OPTIONS among them) were
lost that way. So SIP and RTP sockets ask for a size of their own; the kernel caps
the request at ``net.core.rmem_max``/``wmem_max`` unless the process may exceed
it (``SO_RCVBUFFORCE``, root or CAP_NET_ADMIN), and what was granted is reported.

Drops are read from ``/proc/net/udp`` and ``/proc/net/udp6`` (the ``drops`` column
of the socket's inode): asyncio's datagram transports receive with ``recvfrom``, so
the per-datagram ``SO_RXQ_OVFL`` counter would never be seen. Elsewhere than on
Linux both are no-ops and report nothing.
"""

from __future__ import annotations

import contextlib
import os
import socket
import sys
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

__all__ = ["BufferSizes", "size_buffers", "socket_inode", "udp_drops"]

_PROC_UDP = (Path("/proc/net/udp"), Path("/proc/net/udp6"))
_LINUX = sys.platform.startswith("linux")
# Linux's SO_RCVBUFFORCE/SO_SNDBUFFORCE (not in Python's socket module): they ignore
# the rmem_max/wmem_max caps when the process has CAP_NET_ADMIN.
_FORCE = {socket.SO_RCVBUF: 33, socket.SO_SNDBUF: 32}


@dataclass(frozen=True)
class BufferSizes:
    """What was asked for and what the kernel granted, in the same units (Linux
    doubles a request for its own bookkeeping and reports the doubled figure)."""

    requested: int
    receive: int
    send: int

    @property
    def capped(self) -> bool:
        """True when the kernel granted less than was asked for."""
        return self.receive < self.requested or self.send < self.requested


def size_buffers(sock: socket.socket, requested: int) -> BufferSizes:
    """Ask for `requested` bytes of receive and send buffer on `sock`."""
    return BufferSizes(
        requested,
        _size(sock, socket.SO_RCVBUF, requested),
        _size(sock, socket.SO_SNDBUF, requested),
    )


def _size(sock: socket.socket, option: int, requested: int) -> int:
    with contextlib.suppress(OSError):
        sock.setsockopt(socket.SOL_SOCKET, option, requested)
    granted = _granted(sock, option)
    if granted < requested and _LINUX:
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.SOL_SOCKET, _FORCE[option], requested)
            granted = _granted(sock, option)
    return granted


def _granted(sock: socket.socket, option: int) -> int:
    value = int(sock.getsockopt(socket.SOL_SOCKET, option))
    return value // 2 if _LINUX else value


def socket_inode(sock: socket.socket) -> int | None:
    """The inode the kernel lists the socket under in /proc/net/udp."""
    try:
        return os.fstat(sock.fileno()).st_ino
    except (OSError, ValueError):
        return None


def udp_drops(inodes: Iterable[int]) -> int:
    """Datagrams the kernel dropped on the sockets with these inodes (0 off Linux)."""
    wanted = set(inodes)
    if not wanted:
        return 0
    total = 0
    for path in _PROC_UDP:
        try:
            lines = path.read_text(encoding="ascii", errors="replace").splitlines()
        except OSError:
            continue
        for line in lines[1:]:
            fields = line.split()
            # sl local rem st tx:rx tr:when retrnsmt uid timeout inode ref pointer drops
            if len(fields) >= 13 and fields[9].isdigit() and int(fields[9]) in wanted:
                with contextlib.suppress(ValueError):
                    total += int(fields[12])
    return total
