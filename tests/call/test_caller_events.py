"""Caller events reach the call directly from the leg's callback, with the call's log
fields, and the line is handed back whole when the call stops."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable

import numpy as np
import structlog

from telephony_agent.audio.playout import Frame
from telephony_agent.call.caller_events import CallerEvents
from telephony_agent.logs import bind_call
from telephony_agent.media.leg import AudioIn, DtmfIn, LegEnded, LegEvent, MediaLeg
from telephony_agent.media.outlet import Outlet


class _Leg(MediaLeg):
    """A leg whose datagram callback is `arrive`."""

    sample_rate = 8000

    def __init__(self, *, direct: bool = True) -> None:
        self.outlet: Outlet[LegEvent] = Outlet()
        self._direct = direct

    def arrive(self, event: LegEvent) -> None:
        self.outlet.put_nowait(event)

    def deliver_to(self, handler: Callable[[LegEvent], None] | None) -> bool:
        if not self._direct:
            return False
        self.outlet.deliver_to(handler)
        return True

    def events(self) -> AsyncIterator[LegEvent]:
        async def iterate() -> AsyncIterator[LegEvent]:
            while True:
                event = await self.outlet.get()
                yield event
                if isinstance(event, LegEnded):
                    return

        return iterate()

    def send_frame(self, frame: Frame) -> None:
        del frame

    async def hangup(self, reason: str) -> None:
        del reason


def _recorder(into: list[LegEvent]) -> Callable[[LegEvent], bool]:
    def handle(event: LegEvent) -> bool:
        into.append(event)
        return isinstance(event, LegEnded)

    return handle


def _audio() -> AudioIn:
    return AudioIn(np.zeros(160, dtype=np.int16))


async def _call(leg: _Leg, handle: Callable[[LegEvent], bool]) -> tuple[CallerEvents, list[str]]:
    ends: list[str] = []
    events = CallerEvents(
        leg, handle, failed=lambda: ends.append("media_error"), exhausted=lambda: ends.append("x")
    )
    return events, ends


async def test_direct_deliveries_run_with_the_calls_log_fields_until_the_leg_ends() -> None:
    leg = _Leg()
    seen: list[tuple[str, object]] = []

    def handle(event: LegEvent) -> bool:
        seen.append((type(event).__name__, structlog.contextvars.get_contextvars().get("call_id")))
        return isinstance(event, LegEnded)

    events, ends = await _call(leg, handle)

    async def call_task() -> None:
        bind_call("call-7")
        await events.run()

    task = asyncio.create_task(call_task())
    await asyncio.sleep(0)
    structlog.contextvars.clear_contextvars()  # the datagram callback's own context
    leg.arrive(_audio())
    leg.arrive(DtmfIn("5", 80))
    leg.arrive(LegEnded("caller_hangup"))
    await asyncio.wait_for(task, 1)
    assert seen == [("AudioIn", "call-7"), ("DtmfIn", "call-7"), ("LegEnded", "call-7")]
    assert ends == []
    assert not leg.outlet.direct  # handed back once the leg ended


async def test_a_failing_event_ends_the_call_once_and_the_rest_queue_for_the_next_reader() -> None:
    leg = _Leg()

    def handle(event: LegEvent) -> bool:
        raise RuntimeError("broken frame")

    events, ends = await _call(leg, handle)
    task = asyncio.create_task(events.run())
    await asyncio.sleep(0)
    leg.arrive(_audio())
    leg.arrive(DtmfIn("1", 80))
    await asyncio.wait_for(task, 1)
    assert ends == ["media_error"]
    assert isinstance(await asyncio.wait_for(leg.outlet.get(), 1), DtmfIn)


async def test_stop_hands_the_line_back_and_a_leg_without_direct_delivery_is_read() -> None:
    leg = _Leg()
    got: list[LegEvent] = []
    events, _ = await _call(leg, _recorder(got))
    task = asyncio.create_task(events.run())
    await asyncio.sleep(0)
    leg.arrive(_audio())
    events.stop()
    await asyncio.wait_for(task, 1)
    leg.arrive(DtmfIn("9", 80))
    assert len(got) == 1
    assert isinstance(await asyncio.wait_for(leg.outlet.get(), 1), DtmfIn)

    queued = _Leg(direct=False)
    read: list[LegEvent] = []
    events, ends = await _call(queued, _recorder(read))
    queued.arrive(_audio())
    queued.arrive(LegEnded("caller_hangup"))
    await asyncio.wait_for(events.run(), 1)
    assert [type(e).__name__ for e in read] == ["AudioIn", "LegEnded"]
    assert ends == []
