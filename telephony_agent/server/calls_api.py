"""`/calls` over HTTP: the call records and recordings, for dashboards and pilots.

Why behind the signalling token: records hold what callers said and their numbers.
With a token configured every route here needs it (401 without); with none, only
requests from this machine's loopback are answered (403 otherwise), so a deployment
that opens its HTTP port without setting a token never publishes its callers.

* ``GET /calls?limit=&before=`` — newest first, JSON list; `before` is a call id (paging).
* ``GET /calls/{id}`` — one record (our id, a unique prefix, or the SIP Call-ID).
* ``GET /calls/{id}/recording`` — the WAV, or 404 when the call was not recorded.

Database reads run in a worker thread, never on the event loop that paces media.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import os
from collections.abc import AsyncIterator
from typing import Any

from aiohttp import web

from telephony_agent.records import RecordReader, RecordsError, RecordsUnavailable
from telephony_agent.server.http_errors import HttpRejection

__all__ = ["CallsReader", "calls_routes", "is_loopback"]

MAX_LIMIT = 500


class CallsReader:
    """The records' reader as the routes use it: its one-line errors become HTTP answers.

    The reader itself runs each query in a worker thread, one at a time on its connection.
    """

    def __init__(self, reader: RecordReader) -> None:
        self._reader = reader

    async def list_calls(self, limit: int, before: str | None) -> list[dict[str, Any]]:
        async with _answering():
            return await self._reader.alist_calls(limit=limit, before=before)

    async def get_call(self, call_id: str) -> dict[str, Any] | None:
        async with _answering():
            return await self._reader.aget_call(call_id)

    def close(self) -> None:
        self._reader.close()


@contextlib.asynccontextmanager
async def _answering() -> AsyncIterator[None]:
    """The records' own one-line errors as HTTP answers (never a traceback)."""
    try:
        yield
    except RecordsUnavailable as exc:
        raise HttpRejection(503, "records_unavailable", str(exc), {"Retry-After": "5"}) from None
    except RecordsError as exc:
        raise HttpRejection(400, "bad_records_request", str(exc)) from None


CALLS_READER_KEY: web.AppKey[CallsReader | None] = web.AppKey("calls_reader")


def is_loopback(remote: str | None) -> bool:
    if not remote:
        return False
    try:
        return ipaddress.ip_address(remote).is_loopback
    except ValueError:
        return False


def _reader(request: web.Request, *, has_token: bool) -> CallsReader:
    if not has_token and not is_loopback(request.remote):
        raise HttpRejection(
            403,
            "records_need_token",
            "call records are only served to this machine unless a bearer token is "
            "configured ([http] token_env or token_file)",
        )
    reader = request.app[CALLS_READER_KEY]
    if reader is None:
        raise HttpRejection(404, "records_disabled", "call records are not kept ([records])")
    return reader


def calls_routes(has_token: bool) -> list[web.RouteDef]:
    async def list_calls(request: web.Request) -> web.Response:
        reader = _reader(request, has_token=has_token)
        text = request.query.get("limit", "20")
        if not text.isdigit() or not 1 <= int(text) <= MAX_LIMIT:
            raise HttpRejection(
                400, "bad_limit", f"limit must be a whole number from 1 to {MAX_LIMIT}"
            )
        calls = await reader.list_calls(int(text), request.query.get("before") or None)
        return web.json_response(calls, headers={"Cache-Control": "no-store"})

    async def get_call(request: web.Request) -> web.Response:
        call = await _find(request)
        return web.json_response(call, headers={"Cache-Control": "no-store"})

    async def get_recording(request: web.Request) -> web.StreamResponse:
        call = await _find(request)
        path = call.get("recording")
        if not path or not await asyncio.to_thread(os.path.isfile, path):
            raise HttpRejection(404, "no_recording", "this call has no recording")
        return web.FileResponse(
            path,
            headers={
                "Content-Type": "audio/wav",
                "Cache-Control": "no-store",
                "Content-Disposition": f'attachment; filename="{call["id"]}.wav"',
            },
        )

    async def _find(request: web.Request) -> dict[str, Any]:
        reader = _reader(request, has_token=has_token)
        call = await reader.get_call(request.match_info["call_id"])
        if call is None:
            raise HttpRejection(404, "unknown_call", "no such call in the records")
        return call

    return [
        web.get("/calls", list_calls),
        web.get("/calls/{call_id}", get_call),
        web.get("/calls/{call_id}/recording", get_recording),
    ]
