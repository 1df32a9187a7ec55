"""`telephony-agent dial`: ask a running `serve` to place a call, optionally wait for it.

Why through the HTTP API and not a process of its own: the running server owns the
registrations, the capacity and the records; `dial` is a thin client of
`POST /calls` (and, with `--wait`, of `GET /calls/{id}`), so what it does is exactly
what a dashboard or a CRM integration would do.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from typing import Any

import aiohttp

from telephony_agent.commands.runtime import settings_from_args
from telephony_agent.errors import UsageError
from telephony_agent.server.http_settings import resolve_http_token

__all__ = ["run_dial"]

_POLL_S = 1.0
_WAIT_LIMIT_S = 24 * 3600.0


def _variables(pairs: list[str]) -> dict[str, str]:
    result: dict[str, str] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key.strip():
            raise UsageError(f"--var {pair!r}: expected KEY=VALUE")
        result[key.strip()] = value
    return result


def _base_url(args: argparse.Namespace, listen: str) -> str:
    if args.server:
        server = str(args.server).rstrip("/")
        return server if "://" in server else f"http://{server}"
    host, _, port = listen.rpartition(":")
    host = host.strip("[]")
    if host in ("0.0.0.0", "::", ""):
        host = "127.0.0.1"
    return f"http://{host}:{port}"


async def run_dial(args: argparse.Namespace) -> int:
    settings = settings_from_args(args)
    token = resolve_http_token(settings)
    body: dict[str, Any] = {"to": args.to, "variables": _variables(args.var)}
    if args.profile:
        body["profile"] = args.profile
    if args.registration:
        body["registration"] = args.registration
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    base = _base_url(args, settings.http.listen)
    timeout = aiohttp.ClientTimeout(total=30)
    try:
        async with aiohttp.ClientSession(headers=headers, timeout=timeout) as http:
            async with http.post(f"{base}/calls", json=body) as response:
                answer = await _json(response)
                if response.status != 201:
                    message = answer.get("message") or answer.get("error") or response.reason
                    print(f"telephony-agent: call refused ({response.status}): {message}")
                    return 1
            call_id = str(answer["id"])
            print(f"placed: {call_id} (SIP Call-ID {answer.get('sip_call_id', '')})")
            if not args.wait:
                return 0
            return await _wait(http, base, call_id)
    except aiohttp.ClientError as exc:
        print(f"telephony-agent: error: cannot reach serve at {base}: {exc}", file=sys.stderr)
        return 1


async def _wait(http: aiohttp.ClientSession, base: str, call_id: str) -> int:
    """Poll the record until the call has ended; exit 0 when it was answered."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + _WAIT_LIMIT_S
    while loop.time() < deadline:
        async with http.get(f"{base}/calls/{call_id}") as response:
            record = await _json(response) if response.status == 200 else {}
        if record.get("ended_at"):
            answered = bool(record.get("answered_at"))
            duration = record.get("duration_s") or 0
            print(
                f"ended: {record.get('end_reason')} "
                f"({'answered' if answered else 'not answered'}, {float(duration):.1f} s)"
            )
            return 0 if answered else 1
        await asyncio.sleep(_POLL_S)
    return 1


async def _json(response: aiohttp.ClientResponse) -> dict[str, Any]:
    try:
        data = json.loads(await response.text())
    except ValueError:
        return {}
    return data if isinstance(data, dict) else {}
