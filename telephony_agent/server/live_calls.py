"""The live calls page: who is on the line, what is being said, and a hang-up button.

Why server-sent events read with `fetch`: the page needs one direction only (server
to browser), SSE is plain HTTP that proxies pass, and reading the stream with `fetch`
lets the page send the bearer token in a header — `EventSource` cannot, and a token
in a URL would land in proxy logs.

* ``GET /live`` — the page (open: it holds no data and asks for the token if needed).
* ``GET /live/calls`` — JSON snapshot: live calls with their last lines, recently ended.
* ``GET /live/events`` — ``text/event-stream``: a ``snapshot`` event, then
  ``call_started``, ``transcript`` and ``call_ended`` events as they happen.
* ``POST /live/calls/{id}/hangup`` — ends a live call (the agent's last words play out).

The data routes hold what callers say: behind the token when one is configured, and
answered only to this machine's loopback when none is (the rule of `/calls`).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from typing import Any

from aiohttp import web

from telephony_agent.observability.live import LiveFeed, Subscription
from telephony_agent.server.calls_api import is_loopback
from telephony_agent.server.http_errors import HttpRejection
from telephony_agent.server.operations import OPERATIONS_KEY
from telephony_agent.switchboard import Switchboard

__all__ = [
    "HEARTBEAT_S",
    "OPERATOR_HANGUP",
    "close_live_streams",
    "init_live_streams",
    "live_routes",
]

#: A comment line this often keeps proxies from closing an idle stream.
HEARTBEAT_S = 15.0
#: The end reason of a call hung up from the page.
OPERATOR_HANGUP = "operator_hangup"


class _Streams:
    """The event streams open on one application (ended when it shuts down)."""

    def __init__(self) -> None:
        self.open: set[Subscription] = set()


_STREAMS_KEY = web.AppKey("live_streams", _Streams)
_STOP: dict[str, Any] = {"type": "stop"}


def _feed(request: web.Request, *, has_token: bool) -> LiveFeed:
    if not has_token and not is_loopback(request.remote):
        raise HttpRejection(
            403,
            "live_needs_token",
            "live calls are only shown to this machine unless a bearer token is "
            "configured ([http] token_env or token_file)",
        )
    return request.app[OPERATIONS_KEY].live


def _sse(event: dict[str, Any]) -> bytes:
    name = str(event.get("type", "message"))
    return f"event: {name}\ndata: {json.dumps(event, ensure_ascii=False)}\n\n".encode()


def live_routes(board: Switchboard, *, has_token: bool) -> list[web.RouteDef]:
    async def snapshot(request: web.Request) -> web.Response:
        feed = _feed(request, has_token=has_token)
        return web.json_response(feed.snapshot(), headers={"Cache-Control": "no-store"})

    async def events(request: web.Request) -> web.StreamResponse:
        feed = _feed(request, has_token=has_token)
        subscription = feed.subscribe()
        streams = request.app[_STREAMS_KEY].open
        streams.add(subscription)
        response = web.StreamResponse(
            headers={
                "Content-Type": "text/event-stream",
                "Cache-Control": "no-store",
                "X-Accel-Buffering": "no",
            }
        )
        try:
            await response.prepare(request)
            await response.write(_sse({"type": "snapshot", **feed.snapshot()}))
            while True:
                if subscription.overflowed and subscription.queue.empty():
                    break  # it fell behind: the page reconnects to a fresh snapshot
                try:
                    async with asyncio.timeout(HEARTBEAT_S):
                        event = await subscription.queue.get()
                except TimeoutError:
                    await response.write(b": keep-alive\n\n")
                    continue
                if event is _STOP:
                    break
                await response.write(_sse(event))
        except ConnectionResetError:
            pass  # the page went away
        finally:
            feed.unsubscribe(subscription)
            streams.discard(subscription)
        return response

    async def hang_up(request: web.Request) -> web.Response:
        _feed(request, has_token=has_token)
        call_id = request.match_info["call_id"]
        live = board.find_live(call_id)
        if live is None:
            raise HttpRejection(404, "unknown_call", "no such live call (it may have ended)")
        live.call.request_hangup(OPERATOR_HANGUP)
        return web.json_response({"call_id": call_id, "hanging_up": True})

    return [
        web.get("/live/calls", snapshot),
        web.get("/live/events", events),
        web.post("/live/calls/{call_id}/hangup", hang_up),
    ]


def init_live_streams(app: web.Application) -> None:
    app[_STREAMS_KEY] = _Streams()
    app.on_shutdown.append(close_live_streams)


async def close_live_streams(app: web.Application) -> None:
    """End every open event stream, so stopping never waits for a page to go away."""
    for subscription in list(app[_STREAMS_KEY].open):
        with contextlib.suppress(asyncio.QueueFull):
            subscription.queue.put_nowait(_STOP)
        subscription.overflowed = True
