"""Stopping without dropping calls: refuse new ones, let live ones finish, then end
the rest politely.

Why here: the switchboard owns every live call, SIP or browser, and already refuses
new ones once it drains. What is left is waiting, and then, for the calls still on
the line when time is up, a goodbye in the agent's own voice before the hang-up —
the same way an idle caller is told goodbye: the model is asked to say it, the call
ends once that line has been heard (the `transcript` hook), and a goodbye that never
comes is not waited for beyond `goodbye_wait_s`.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from dataclasses import dataclass

import structlog

from telephony_agent.call.record import TranscriptLine
from telephony_agent.switchboard.board import CallListener, LiveCall, Switchboard

__all__ = ["DRAIN_END_REASON", "DrainOutcome", "Drainer"]

log = structlog.get_logger(__name__)

#: The end reason of calls still live when the drain time ran out.
DRAIN_END_REASON = "server_draining"
POLL_S = 0.1


@dataclass(frozen=True)
class DrainOutcome:
    #: Calls live when the drain started, and those that ended on their own in time.
    live_at_start: int
    finished_in_time: int
    #: Calls ended with a goodbye (or without, when none was configured or it never came).
    ended_politely: int
    #: True when a second signal cut the drain short.
    forced: bool
    seconds: float


class Drainer(CallListener):
    """Runs one drain of `board`; a listener only to hear the goodbyes."""

    def __init__(
        self,
        board: Switchboard,
        *,
        timeout_s: float,
        goodbye_instructions: str,
        goodbye_wait_s: float = 10.0,
    ) -> None:
        self._board = board
        self.timeout_s = timeout_s
        self.goodbye_instructions = goodbye_instructions.strip()
        self.goodbye_wait_s = goodbye_wait_s
        self._asked: set[str] = set()

    async def run(self, force: asyncio.Event) -> DrainOutcome:
        """Drain until every call has ended, the time is up (then end them politely), or
        `force` is set; returns what happened. Calls still live after it are the
        caller's to hang up."""
        board = self._board
        started = time.monotonic()
        board.drain()
        at_start = board.active_calls
        log.info("drain_started", active=at_start, timeout_s=self.timeout_s)
        await self._until_idle(started + self.timeout_s, force)
        in_time = at_start - board.active_calls
        polite = 0
        if board.live_calls() and not force.is_set():
            polite = len(board.live_calls())
            self._say_goodbye()
            # The hang-up after a goodbye still lets the last words play out. Calls that
            # never started (answered, no ACK yet) have nobody to say goodbye to: the
            # front door's shutdown ends them, so they are not waited for here.
            await self._until_idle(
                time.monotonic() + self.goodbye_wait_s + 5.0, force, live_only=True
            )
        outcome = DrainOutcome(
            live_at_start=at_start,
            finished_in_time=max(0, in_time),
            ended_politely=polite,
            forced=force.is_set(),
            seconds=round(time.monotonic() - started, 3),
        )
        log.info(
            "drain_finished",
            live_at_start=outcome.live_at_start,
            finished_in_time=outcome.finished_in_time,
            ended_politely=outcome.ended_politely,
            forced=outcome.forced,
            still_active=board.active_calls,
            seconds=outcome.seconds,
        )
        return outcome

    async def _until_idle(
        self, deadline: float, force: asyncio.Event, *, live_only: bool = False
    ) -> None:
        board = self._board
        while (board.live_calls() if live_only else board.active_calls) and not force.is_set():
            left = deadline - time.monotonic()
            if left <= 0:
                return
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(min(POLL_S, left)):
                    await force.wait()

    def _say_goodbye(self) -> None:
        """Ask each live call's model for a goodbye; hang up once it is heard."""
        calls = self._board.live_calls()
        if not self.goodbye_instructions:
            for live in calls:
                live.call.request_hangup(DRAIN_END_REASON)
            return
        self._board.add_listener(self)
        for live in calls:
            self._asked.add(live.id)
            live.call.session.create_response(instructions=self.goodbye_instructions)
        loop = asyncio.get_running_loop()
        loop.call_later(self.goodbye_wait_s, self._hang_up_the_rest)

    def transcript(self, call: LiveCall, line: TranscriptLine) -> None:
        if line.speaker == "agent" and call.id in self._asked:
            self._asked.discard(call.id)
            call.call.request_hangup(DRAIN_END_REASON)

    def _hang_up_the_rest(self) -> None:
        for live in self._board.live_calls():
            if live.id in self._asked:
                self._asked.discard(live.id)
                live.call.request_hangup(DRAIN_END_REASON)
