"""`telephony-agent demo`: a real SIP call to a booking line, offline, in one command.

Starts the local Realtime backend (its "booking" behaviour) and the switchboard with
the shipped booking-line profile (`deploy/booking-line.example.toml`), then dials
`sip:booking@127.0.0.1` with the softphone. The caller asks for a table, says yes,
and types four digits on the keypad; the agent greets, calls its tools, reads back
what they returned and hangs up. The live transcript, each turn's latency as the
caller heard it, and a WAV of the call are the output. Every part on the path is the
production one: SIP over UDP, RTP, the switchboard, the bridge, the Python tools, the
Realtime client over a websocket.
"""

from __future__ import annotations

import argparse
from importlib.resources import as_file, files
from pathlib import Path

import numpy as np
from numpy.typing import NDArray

from telephony_agent.call.record import CallRecord, TranscriptLine
from telephony_agent.caller.outbound_call import CallOptions, CallResult, place_call
from telephony_agent.commands.call import write_recording
from telephony_agent.commands.runtime import open_provider
from telephony_agent.config import KNOWN_CODECS, Settings, load_settings
from telephony_agent.errors import UsageError
from telephony_agent.media.audiofile import decode_audio_file
from telephony_agent.metrics import LatencySamples
from telephony_agent.server.sip_server import AgentSipServer
from telephony_agent.switchboard import Switchboard
from telephony_agent.switchboard.keeper import records_paths
from telephony_agent.switchboard.keeping import Keeping

CALLER_RATE = 48000
#: The caller's side of the conversation: what it says, after how long a pause.
#: The pauses leave room for the agent's answer on a loaded machine.
CALLER_TURNS = (
    (6.5, "caller_booking_request.wav"),  # after the greeting
    (11.0, "caller_yes.wav"),  # after "One moment" + the offer read back from the tool
)
#: The keypad entry, this long after the caller's last words (after the keypad prompt).
KEYPAD_AFTER_S = 7.0
KEYPAD_DIGITS = "4512#"
#: Listening after the keypad entry; the agent normally hangs up well before.
TAIL_S = 25.0
DIALLED = "booking"


def _booking_file(name: str) -> Path:
    return Path(str(files("telephony_agent") / "samples" / "booking" / name))


def caller_script() -> tuple[NDArray[np.int16], float]:
    """The caller's audio (pauses and phrases) and when the keypad entry starts."""
    parts: list[NDArray[np.int16]] = []
    for pause_s, name in CALLER_TURNS:
        parts.append(np.zeros(int(pause_s * CALLER_RATE), dtype=np.int16))
        parts.append(decode_audio_file(_booking_file(name), CALLER_RATE))
    audio = np.concatenate(parts)
    return audio, audio.size / CALLER_RATE + KEYPAD_AFTER_S


async def run_demo(args: argparse.Namespace) -> int:
    codec = {c.lower(): c for c in KNOWN_CODECS}.get(args.codec.lower())
    if codec is None:
        raise UsageError(f"--codec {args.codec!r}: expected one of {', '.join(KNOWN_CODECS)}")
    _check_output(args.record)
    overrides: dict[str, dict[str, object]] = {
        "sip": {"listen": "127.0.0.1:0", "transports": "udp", "t1_ms": 100},
        "log": {"level": args.log_level or "warning"},
    }
    if args.provider:
        overrides["provider"] = {"name": args.provider}
    if args.config is not None:
        settings = load_settings(args.config, overrides=overrides)
        return await _demo(settings, codec, args.record)
    with as_file(files("telephony_agent") / "demo_tools" / "booking-line.toml") as shipped:
        settings = load_settings(shipped, overrides=overrides)
    return await _demo(settings, codec, args.record)


async def _demo(settings: Settings, codec: str, record: Path) -> int:
    runtime = await open_provider(settings)

    def show(_call_id: str, line: TranscriptLine) -> None:
        print(f"  [{line.t:5.2f} s] {line.speaker:>6}: {line.text}", flush=True)

    board = Switchboard(runtime.deployment(settings))
    keeping = await Keeping.open(settings)
    keeping.attach(board)
    server = AgentSipServer(board, on_transcript=show)
    try:
        await server.start()
        uri = f"sip:{DIALLED}@127.0.0.1:{server.sip_port}"
        profile = board.deployment.profiles.route(DIALLED)
        audio, keypad_at = caller_script()
        print(
            f"calling {uri} ({codec}): profile {profile.name!r}, provider "
            f"{runtime.resolved.name}; the caller asks for a table, says yes, "
            f"and types {KEYPAD_DIGITS} on the keypad...",
            flush=True,
        )
        result = await place_call(
            CallOptions(
                uri=uri,
                audio=audio,
                audio_rate=CALLER_RATE,
                codecs=(codec,),
                tail_s=TAIL_S,
                dtmf=KEYPAD_DIGITS,
                dtmf_at_s=keypad_at,
                t1_s=0.1,
            )
        )
    finally:
        await server.shutdown()
        await board.close()
        await keeping.close()
        await runtime.close()
    print(result.summary())
    if not result.answered:
        return 1
    write_recording(result, str(record))
    records = [s.record for s in server.finished if s.record is not None]
    for line in _report(result, records, settings):
        print(line)
    heard_s = result.recording.size / result.recording_rate
    print(f"wrote {record} ({heard_s:.1f} s heard by the caller)")
    if keeping.writer is not None:
        where = records_paths(settings.records).data_dir
        print(f"the call's record is in {where}/: telephony-agent calls list, calls show ID")
    return 0


def _report(result: CallResult, records: list[CallRecord], settings: Settings) -> list[str]:
    """Turn latencies as the caller heard them, then what the bridge itself added."""
    window = settings.vad.silence_duration_ms
    lines = [
        "turn latency = end of the caller's speech -> first agent audio the caller heard "
        f"(includes the {window} ms of silence the VAD waits for before ending a turn):"
    ]
    for index, ms in enumerate(result.turn_latencies_ms, 1):
        lines.append(f"  turn {index}: {ms:.0f} ms ({ms - window:.0f} ms after the VAD window)")
    uplink = LatencySamples()
    downlink = LatencySamples()
    for call_record in records:
        uplink.extend(call_record.uplink_latency)
        downlink.extend(call_record.downlink_latency)
        for tool in call_record.tool_results:
            outcome = "ok" if tool.ok else f"failed: {tool.error}"
            lines.append(f"tool {tool.name}: {outcome} in {tool.duration_ms:.1f} ms")
        if call_record.dtmf:
            lines.append(f"keypad entry: {call_record.dtmf}")
    lines.append(f"bridge uplink (RTP in -> websocket sent): {uplink.summary().describe()}")
    lines.append(f"bridge downlink (model audio in -> RTP out): {downlink.summary().describe()}")
    return lines


def _check_output(path: Path) -> None:
    parent = path.resolve().parent
    if not parent.is_dir():
        raise UsageError(f"--record {path}: folder {parent} does not exist")
