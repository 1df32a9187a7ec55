"""`telephony-agent calls list|show`: read the call records, even while `serve` runs.

Why read-only and separate from `serve`: a pilot looks at calls from a shell on the
machine (or through `/calls` over HTTP) without disturbing the service; the reader
opens its own read connection, which SQLite's WAL mode and PostgreSQL both allow.
"""

from __future__ import annotations

import argparse
import json
from datetime import datetime
from typing import Any

from telephony_agent.commands.runtime import settings_from_args
from telephony_agent.errors import UsageError
from telephony_agent.records import RecordReader, open_reader
from telephony_agent.switchboard.keeper import records_paths

__all__ = ["format_dialogue", "run_calls"]


def run_calls(args: argparse.Namespace) -> int:
    settings = settings_from_args(args)
    database = records_paths(settings.records).database
    reader = open_reader(database)
    try:
        if args.calls_command == "list":
            return _list(reader, args)
        return _show(reader, args)
    finally:
        reader.close()


def _list(reader: RecordReader, args: argparse.Namespace) -> int:
    if args.limit < 1 or args.limit > 10_000:
        raise UsageError(f"--limit {args.limit}: expected a number from 1 to 10000")
    since = _since(args.since) if args.since else None
    calls = reader.list_calls(limit=args.limit, since=since, profile=args.profile)
    if args.json:
        print(json.dumps(calls, ensure_ascii=False, indent=2))
        return 0
    if not calls:
        print("no calls recorded yet")
        return 0
    for call in calls:
        print(_one_line(call))
    return 0


def _show(reader: RecordReader, args: argparse.Namespace) -> int:
    call = reader.get_call(args.call_id)
    if call is None:
        raise UsageError(f"no call {args.call_id!r} in the records")
    if args.json:
        print(json.dumps(call, ensure_ascii=False, indent=2))
        return 0
    print("\n".join(format_dialogue(call)))
    return 0


def _since(text: str) -> float:
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        raise UsageError(
            f"--since {text!r}: expected an ISO date or time, e.g. 2026-12-01 or 2026-12-01T09:30"
        ) from None
    if moment.tzinfo is None:
        moment = moment.astimezone()  # a local time, as typed at the shell
    return moment.timestamp()


def _when(value: str | None) -> str:
    if not value:
        return "-"
    moment = datetime.fromisoformat(value).astimezone()
    return moment.strftime("%Y-%m-%d %H:%M:%S")


def _duration(call: dict[str, Any]) -> str:
    seconds = call.get("duration_s")
    return f"{seconds:.1f} s" if isinstance(seconds, int | float) else "-"


def _one_line(call: dict[str, Any]) -> str:
    turns = call.get("turn_count", len(call.get("turns") or []))
    caller = call.get("from") or "?"
    dialled = call.get("to") or "?"
    return (
        f"{_when(call.get('offered_at'))}  {call['id'][:12]}  {caller} -> {dialled}  "
        f"profile {call.get('profile') or '-'}  {_duration(call)}  "
        f"{call.get('end_reason') or 'in progress'}  {turns} turns"
    )


def format_dialogue(call: dict[str, Any]) -> list[str]:
    """The record as a person reads it: the facts, then the dialogue with tool calls."""
    lines = [
        f"call {call['id']}  ({call.get('kind')}, {call.get('direction')})",
        f"  SIP Call-ID / session: {call.get('sip_call_id')}",
        f"  from {call.get('from') or '?'} to {call.get('to') or '?'}, "
        f"profile {call.get('profile') or '-'}, provider {call.get('provider') or '-'}"
        f"{' (' + call['model'] + ')' if call.get('model') else ''}, "
        f"codec {call.get('codec') or '-'}, remote {call.get('remote') or '-'}",
        f"  offered {_when(call.get('offered_at'))}, answered {_when(call.get('answered_at'))}, "
        f"ended {_when(call.get('ended_at'))} ({_duration(call)})",
        f"  ended: {call.get('end_reason') or 'in progress'}"
        f"{' by ' + call['ended_by'] if call.get('ended_by') else ''}",
    ]
    if call.get("dtmf"):
        lines.append(f"  keypad: {call['dtmf']}")
    recording = call.get("recording")
    if recording:
        status = call.get("recording_status") or ""
        note = f" - {call['recording_note']}" if call.get("recording_note") else ""
        lines.append(f"  recording: {recording} ({status}{note})")
    turns = call.get("turns") or []
    if turns:
        shown = ", ".join(f"{t['to_first_frame_ms']:.0f}" for t in turns)
        lines.append(f"  turn latency, end of speech -> first agent audio out (ms): {shown}")
    lines.append("")
    entries: list[tuple[int, str]] = []
    for line in call.get("transcript") or []:
        cut = " [cut off by the caller]" if line.get("truncated") else ""
        entries.append(
            (
                int(line["start_ms"]),
                f"{_clock(line['start_ms'])} {line['speaker']:>6}: {line['text']}{cut}",
            )
        )
    for barge in call.get("barge_ins") or []:
        entries.append(
            (
                int(barge["at_ms"]),
                f"{_clock(barge['at_ms'])}        (barge-in after "
                f"{barge['played_ms']} ms of agent audio)",
            )
        )
    lines.extend(text for _, text in sorted(entries, key=lambda entry: entry[0]))
    return lines


def _clock(ms: int | float) -> str:
    seconds = int(ms) / 1000
    return f"[{int(seconds // 60):02d}:{seconds % 60:06.3f}]"
