"""Port allocator: even RTP ports with RTCP above, no sharing, round-robin reuse, binding."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import Iterator

import pytest

from telephony_agent.media.rtp.ports import PortAllocator, PortsExhausted, bind_pair


def test_pairs_are_even_ports_with_room_for_rtcp() -> None:
    allocator = PortAllocator(20001, 20010)
    assert allocator.capacity == 4  # 20002, 20004, 20006, 20008 (20010 has no 20011)
    ports = [allocator.allocate() for _ in range(4)]
    assert ports == [20002, 20004, 20006, 20008]
    assert allocator.in_use == 4
    with pytest.raises(PortsExhausted):
        allocator.allocate()


def test_default_range() -> None:
    allocator = PortAllocator()
    assert (allocator.first, allocator.capacity) == (20000, 500)


def test_release_and_round_robin_reuse() -> None:
    allocator = PortAllocator(30000, 30007)
    first = allocator.allocate()
    second = allocator.allocate()
    allocator.release(first)
    allocator.release(first)  # idempotent
    assert allocator.allocate() not in (first, second)  # the just-freed port waits its turn
    assert allocator.allocate() not in (first, second)
    assert allocator.allocate() == first
    assert allocator.is_allocated(second)


@pytest.mark.parametrize(("first", "last"), [(80, 1000), (20000, 20000), (65000, 70000)])
def test_bad_ranges(first: int, last: int) -> None:
    with pytest.raises(ValueError):
        PortAllocator(first, last)


def _free_base(pairs: int) -> int:
    """An even port with `2 * pairs` consecutive free UDP ports on 127.0.0.1."""
    for base in range(41000, 60000, 2 * pairs):
        held: list[socket.socket] = []
        try:
            for port in range(base, base + 2 * pairs):
                s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
                held.append(s)
                s.bind(("127.0.0.1", port))
        except OSError:
            continue
        finally:
            for s in held:
                s.close()
        return base
    raise RuntimeError("no free port block")


@pytest.fixture
def base() -> int:
    return _free_base(3)


@pytest.fixture
def blocker() -> Iterator[list[socket.socket]]:
    held: list[socket.socket] = []
    yield held
    for s in held:
        s.close()


def _block(held: list[socket.socket], port: int) -> None:
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.bind(("127.0.0.1", port))
    held.append(s)


async def test_bind_pair_skips_ports_another_process_holds(
    base: int, blocker: list[socket.socket]
) -> None:
    allocator = PortAllocator(base, base + 5)
    _block(blocker, base)  # RTP port of the first pair
    _block(blocker, base + 3)  # RTCP port of the second pair
    pair = await bind_pair(
        allocator, "127.0.0.1", asyncio.DatagramProtocol, asyncio.DatagramProtocol
    )
    try:
        assert pair.port == base + 4
        assert pair.rtp.get_extra_info("sockname")[1] == base + 4
        assert pair.rtcp.get_extra_info("sockname")[1] == base + 5
        assert allocator.in_use == 1 and allocator.is_allocated(base + 4)
    finally:
        pair.rtp.close()
        pair.rtcp.close()


async def test_bind_pair_exhausted_when_nothing_binds(
    base: int, blocker: list[socket.socket]
) -> None:
    allocator = PortAllocator(base, base + 3)
    _block(blocker, base + 1)
    _block(blocker, base + 2)
    with pytest.raises(PortsExhausted, match="no bindable"):
        await bind_pair(allocator, "127.0.0.1", asyncio.DatagramProtocol, asyncio.DatagramProtocol)
    assert allocator.in_use == 0
