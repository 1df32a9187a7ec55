"""`/calls` over HTTP: the call records and recordings, for dashboards and pilots.

Why behind the signalling token: records hold what callers said and their numbers.
With a token configured every route here needs it (401 without); with none, only
requests from this machine's loopback are answered (403 otherwise), so a deployment
that opens its HTTP port without setting a token never publishes its callers.

* ``GET /calls?limit=&before=`` — newest first, JSON list; `before` is a call id (paging).
* ``GET /calls/{id}`` — one record (our id, a unique prefix, or the SIP Call-ID).
* ``GET /calls/{id}/recording`` — the WAV, or 404 when the call was not recorded.
* ``POST /calls`` — place a call: JSON ``{"to", "profile", "registration", "variables"}``
  → 201 ``{"id", "sip_call_id"}``. Placing calls spends money, so without a token this
  is only allowed when the HTTP side listens on loopback (403 with the reason otherwise).

Database reads run in a worker thread, never on the event loop that paces media.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import os
from collections.abc import AsyncIterator, Callable
from typing import Any

from aiohttp import web

from telephony_agent.records import RecordReader, RecordsError, RecordsUnavailable
from telephony_agent.server.dialing import DialError, DialRequest
from telephony_agent.server.http_errors import HttpRejection

__all__ = ["CallsReader", "Dialer", "calls_routes", "is_loopback"]

#: Places one outbound call and returns (our id, SIP Call-ID); raises DialError.
Dialer = Callable[[DialRequest], tuple[str, str]]

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


def _dial_request(body: object) -> DialRequest:
    """The JSON body of POST /calls, checked; HttpRejection names the bad field."""
    if not isinstance(body, dict):
        raise HttpRejection(400, "bad_dial_request", "expected a JSON object")
    unknown = sorted(set(body) - {"to", "profile", "registration", "variables"})
    if unknown:
        raise HttpRejection(400, "bad_dial_request", f"unknown field {unknown[0]!r}")
    to = body.get("to")
    if not isinstance(to, str) or not to.strip():
        raise HttpRejection(400, "bad_dial_request", "'to' must be a SIP URI or a number")
    for name in ("profile", "registration"):
        if body.get(name) is not None and not isinstance(body[name], str):
            raise HttpRejection(400, "bad_dial_request", f"{name!r} must be a string")
    variables = body.get("variables") or {}
    if not isinstance(variables, dict) or not all(
        isinstance(k, str) and isinstance(v, str | int | float) for k, v in variables.items()
    ):
        raise HttpRejection(400, "bad_dial_request", "'variables' must map names to values")
    return DialRequest(
        to=to,
        profile=body.get("profile"),
        registration=body.get("registration"),
        variables={k: str(v) for k, v in variables.items()},
    )


def calls_routes(
    has_token: bool, *, dialer: Dialer | None = None, listens_on_loopback: bool = False
) -> list[web.RouteDef]:
    async def place_call(request: web.Request) -> web.Response:
        if not has_token and not (listens_on_loopback and is_loopback(request.remote)):
            raise HttpRejection(
                403,
                "dialling_needs_token",
                "placing calls costs money: configure a bearer token ([http] token_env or "
                "token_file) or listen on loopback only",
            )
        if dialer is None:
            raise HttpRejection(404, "no_sip", "this server places no SIP calls")
        try:
            body = await request.json()
        except ValueError:
            raise HttpRejection(400, "bad_dial_request", "expected a JSON object") from None
        dial = _dial_request(body)
        try:
            call_id, sip_call_id = dialer(dial)
        except DialError as exc:
            headers = {"Retry-After": "1"} if exc.status in (429, 503) else None
            raise HttpRejection(exc.status, "dial_refused", str(exc), headers) from None
        return web.json_response(
            {"id": call_id, "sip_call_id": sip_call_id},
            status=201,
            headers={"Location": f"/calls/{call_id}", "Cache-Control": "no-store"},
        )

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
        web.post("/calls", place_call),
        web.get("/calls", list_calls),
        web.get("/calls/{call_id}", get_call),
        web.get("/calls/{call_id}/recording", get_recording),
    ]
