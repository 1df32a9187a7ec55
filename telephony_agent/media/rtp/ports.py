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

__all__ = ["BoundPair", "PortAllocator", "PortsExhausted", "bind_pair"]


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


@dataclass(slots=True)
class BoundPair:
    """Two bound UDP endpoints: RTP on the even port, RTCP on the next one."""

    port: int
    rtp: asyncio.DatagramTransport
    rtcp: asyncio.DatagramTransport


async def bind_pair(
    allocator: PortAllocator,
    host: str,
    rtp_protocol: Callable[[], asyncio.DatagramProtocol],
    rtcp_protocol: Callable[[], asyncio.DatagramProtocol],
) -> BoundPair:
    """Bind RTP and RTCP sockets on the first pair of the range that the OS allows.

    A pair that fails to bind (held by another process) is released again and
    the next one tried; PortsExhausted when every free pair was tried. The
    caller owns the returned pair and must release ``pair.port`` when done.
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
        return BoundPair(port, rtp, rtcp)
    detail = f" (last error: {last_error})" if last_error is not None else ""
    raise PortsExhausted(f"no bindable RTP port pair in {allocator.first}-{allocator.last}{detail}")
