"""After a burst of mutated SIP (calls included), every internal table empties again.

Why a test and not only the RSS benchmark: a map keyed by request or dialog that
keeps one entry too many grows with every message an attacker sends, and RSS shows
it only after tens of thousands. Here the server runs with T1 = 20 ms, so every
transaction, unacknowledged 200 and dialog runs out within seconds, and each table
is checked by name after two rounds.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket

from telephony_agent.fuzz.wire import SipMutator, WireTarget
from telephony_agent.server.sip_server import FINISHED_KEPT, AgentSipServer
from tests.server.conftest import ServerFactory

ROUND_UDP = 1500
ROUND_TCP = 200


def _sizes(server: AgentSipServer) -> dict[str, int]:
    endpoint = server.endpoint
    layer = endpoint.layer
    return {
        "calls": len(server._calls),
        "calls by INVITE": len(server._by_invite),
        "pending calls": len(server._pending) + server.limits.pending,
        "tasks": len(server._tasks),
        "admitted": server.switchboard.active_calls,
        "RTP ports": server.ports.in_use,
        "server transactions": layer.server_count,
        "client transactions": layer.client_count,
        "2xx awaiting ACK": len(layer._awaiting_ack),
        "timers": 0 if layer.next_deadline() is None else 1,
        "requests awaiting answers": len(endpoint._pending) + len(endpoint._provisional),
        "TCP connections": len(endpoint._tcp_writers) + len(endpoint._tcp_tasks),
    }


async def _round(server: AgentSipServer, seed: int) -> None:
    udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    udp.bind(("127.0.0.1", 0))
    udp.setblocking(False)
    target = WireTarget("127.0.0.1", server.sip_port, "127.0.0.1", udp.getsockname()[1])
    mutator = SipMutator(target, seed=seed)
    for n in range(ROUND_UDP):
        with contextlib.suppress(OSError):  # a datagram too large to send tests nothing
            udp.sendto(mutator.message(), ("127.0.0.1", server.sip_port))
        if n % 25 == 0:
            await asyncio.sleep(0.005)
    tcp_target = WireTarget("127.0.0.1", server.sip_port, "127.0.0.1", 5099, transport="TCP")
    tcp_mutator = SipMutator(tcp_target, seed=seed + 1)
    for _ in range(4):
        reader, writer = await asyncio.open_connection("127.0.0.1", server.sip_port)
        for _ in range(ROUND_TCP // 4):
            writer.write(tcp_mutator.message())
        await writer.drain()
        await asyncio.sleep(0.05)
        writer.close()
        del reader
    udp.close()


async def _drained(server: AgentSipServer, within_s: float) -> dict[str, int]:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + within_s
    while True:
        sizes = _sizes(server)
        if not any(sizes.values()) or loop.time() > deadline:
            return sizes
        await asyncio.sleep(0.1)


async def test_tables_return_to_empty_after_each_round(sip_server: ServerFactory) -> None:
    async with sip_server(
        sip={
            "t1_ms": 20,
            "max_calls": 300,
            "max_pending_calls": 300,
            "max_pending_per_source": 300,
            "invite_rate_per_source": 10_000.0,
        },
        rtp={"inactivity_timeout_s": 1.0},
    ) as server:
        for seed in (1, 2):
            await _round(server, seed)
            sizes = await _drained(server, within_s=20.0)
            assert not any(sizes.values()), {k: v for k, v in sizes.items() if v}
            assert len(server.finished) <= FINISHED_KEPT
            assert server.limits.tracked_sources <= 2
        assert server.stats.invites > 20, "the round must reach the call paths"
        assert server.endpoint.stats.bad_requests_answered > 100
        assert server.endpoint.last_resort.caught == 0, server.endpoint.last_resort.sites
