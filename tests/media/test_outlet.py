"""A leg's outlet: queued events, or handed straight to a handler, in order either way."""

from __future__ import annotations

import asyncio

import pytest

from telephony_agent.media.outlet import Outlet


async def test_without_a_handler_events_queue_for_get() -> None:
    outlet: Outlet[int] = Outlet()
    outlet.put_nowait(1)
    outlet.put_nowait(2)
    assert [await outlet.get(), await outlet.get()] == [1, 2]


async def test_a_handler_gets_what_was_queued_first_then_each_event_as_it_comes() -> None:
    outlet: Outlet[int] = Outlet()
    got: list[int] = []
    outlet.put_nowait(1)
    outlet.put_nowait(2)
    outlet.deliver_to(got.append)
    assert got == [1, 2]
    outlet.put_nowait(3)
    assert got == [1, 2, 3]
    assert outlet.direct


async def test_an_event_produced_inside_the_handler_comes_after_it_never_inside() -> None:
    outlet: Outlet[str] = Outlet()
    trace: list[str] = []

    def handler(event: str) -> None:
        trace.append(f"begin {event}")
        if event == "audio":
            outlet.put_nowait("ended")  # the handler closed the leg
        trace.append(f"end {event}")

    outlet.deliver_to(handler)
    outlet.put_nowait("audio")
    assert trace == ["begin audio", "end audio", "begin ended", "end ended"]


async def test_withdrawing_the_handler_inside_it_queues_the_rest_for_the_next_reader() -> None:
    outlet: Outlet[str] = Outlet()
    got: list[str] = []

    def handler(event: str) -> None:
        got.append(event)
        if event == "last for the call":
            outlet.put_nowait("for the relay")
            outlet.deliver_to(None)

    outlet.deliver_to(handler)
    outlet.put_nowait("last for the call")
    outlet.put_nowait("also for the relay")
    assert got == ["last for the call"]
    assert not outlet.direct
    assert await asyncio.wait_for(outlet.get(), 1) == "for the relay"
    assert await asyncio.wait_for(outlet.get(), 1) == "also for the relay"


async def test_a_handler_that_raises_loses_no_later_event() -> None:
    outlet: Outlet[int] = Outlet()
    got: list[int] = []

    def handler(event: int) -> None:
        if event == 1:
            raise RuntimeError("bad frame")
        got.append(event)

    outlet.deliver_to(handler)
    with pytest.raises(RuntimeError):
        outlet.put_nowait(1)
    outlet.put_nowait(2)
    assert got == [2]
