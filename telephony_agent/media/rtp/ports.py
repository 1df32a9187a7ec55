"""RTP/RTCP port pairs: an even RTP port and the odd port above it for RTCP.

Why an allocator rather than letting the OS pick (port 0): SDP advertises one
port and RTCP is implied on port+1 (RFC 3550 §11), so both must be free
together; firewalls and SBCs are configured for a known range; and two calls
must never share a port. Ports are handed out round-robin, so a port just
released is the last to be reused and stray packets of a finished call do not
land in a new one.

:class:`PortAllocator` is pure bookkeeping; :func:`bind_pair` does the binding
and moves on to the next pair when the OS refuses one (another process holds
it), raising :class:`PortsExhausted` only when every free pair failed.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import structlog

from telephony_agent.netbuffers import size_buffers, socket_inode

__all__ = [
    "BoundPair",
    "DatagramForwarder",
    "PortAllocator",
    "PortsExhausted",
    "bind_pair",
    "size_pair_buffers",
]

log = structlog.get_logger(__name__)


class PortsExhausted(RuntimeError):
    """No RTP/RTCP port pair of the configured range is free (or bindable)."""


class PortAllocator:
    """Hands out even RTP ports (RTCP = port + 1) from ``first..last`` inclusive."""

    def __init__(self, first: int = 20000, last: int = 20999) -> None:
        start = first + (first & 1)
        if not 1024 <= start < last <= 65535:
            raise ValueError(f"RTP port range {first}-{last} must hold a pair within 1024-65535")
        self.first = start
        self.last = last
        self._ports = list(range(start, last, 2))  # every even p with p + 1 <= last
        self._in_use: set[int] = set()
        self._cursor = 0

    @property
    def capacity(self) -> int:
        """Number of pairs in the range."""
        return len(self._ports)

    @property
    def in_use(self) -> int:
        return len(self._in_use)

    def is_allocated(self, port: int) -> bool:
        return port in self._in_use

    def allocate(self) -> int:
        """Reserve the next free pair; returns its (even) RTP port."""
        for _ in range(len(self._ports)):
            port = self._ports[self._cursor]
            self._cursor = (self._cursor + 1) % len(self._ports)
            if port not in self._in_use:
                self._in_use.add(port)
                return port
        raise PortsExhausted(
            f"all {len(self._ports)} RTP port pairs in {self.first}-{self.last} are in use"
        )

    def release(self, port: int) -> None:
        """Return a pair (idempotent: releasing a free port is a no-op)."""
        self._in_use.discard(port)


class DatagramForwarder(asyncio.DatagramProtocol):
    """Forwards one socket's datagrams to a callback (the leg's RTP or RTCP handler)."""

    def __init__(self, on_datagram: Callable[[bytes, Any], None]) -> None:
        self._on_datagram = on_datagram

    def datagram_received(self, data: bytes, addr: Any) -> None:
        self._on_datagram(data, addr)

    def error_received(self, exc: Exception) -> None:
        # ICMP port unreachable after the peer went away, and the like: the
        # inactivity timeout ends the call if the peer is really gone.
        log.debug("rtp_socket_error", error=str(exc))


@dataclass(slots=True)
class BoundPair:
    """Two bound UDP endpoints: RTP on the even port, RTCP on the next one."""

    port: int
    rtp: asyncio.DatagramTransport
    rtcp: asyncio.DatagramTransport

    def inodes(self) -> list[int]:
        """The sockets' inodes, for the kernel's drop counters (see `netbuffers`)."""
        found = []
        for transport in (self.rtp, self.rtcp):
            sock = transport.get_extra_info("socket")
            inode = socket_inode(sock) if sock is not None else None
            if inode is not None:
                found.append(inode)
        return found


def size_pair_buffers(pair: BoundPair, buffer_bytes: int) -> None:
    """Receive and send buffers of both sockets (the kernel may grant less)."""
    for transport in (pair.rtp, pair.rtcp):
        sock = transport.get_extra_info("socket")
        if sock is not None:
            size_buffers(sock, buffer_bytes)


async def bind_pair(
    allocator: PortAllocator,
    host: str,
    rtp_protocol: Callable[[], asyncio.DatagramProtocol],
    rtcp_protocol: Callable[[], asyncio.DatagramProtocol],
    *,
    buffer_bytes: int | None = None,
) -> BoundPair:
    """Bind RTP and RTCP sockets on the first pair of the range that the OS allows.

    A pair that fails to bind (held by another process) is released again and
    the next one tried; PortsExhausted when every free pair was tried. The
    caller owns the returned pair and must release ``pair.port`` when done.
    `buffer_bytes` sizes both sockets' receive and send buffers.
    """
    loop = asyncio.get_running_loop()
    last_error: OSError | None = None
    for _ in range(allocator.capacity - allocator.in_use):
        port = allocator.allocate()
        rtp: asyncio.DatagramTransport | None = None
        try:
            rtp, _ = await loop.create_datagram_endpoint(rtp_protocol, local_addr=(host, port))
            rtcp, _ = await loop.create_datagram_endpoint(
                rtcp_protocol, local_addr=(host, port + 1)
            )
        except OSError as exc:
            last_error = exc
            if rtp is not None:
                rtp.close()
            allocator.release(port)
            continue
        pair = BoundPair(port, rtp, rtcp)
        if buffer_bytes is not None:
            size_pair_buffers(pair, buffer_bytes)
        return pair
    detail = f" (last error: {last_error})" if last_error is not None else ""
    raise PortsExhausted(f"no bindable RTP port pair in {allocator.first}-{allocator.last}{detail}")
