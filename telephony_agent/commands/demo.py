"""`telephony-agent demo`: a real SIP call to a real agent, offline, in one command.

Starts the local Realtime backend and the SIP server on loopback, dials it with
the softphone speaking a bundled sentence twice, prints the live transcript and
each turn's latency, writes what the caller heard, and exits 0. Every part on
the path is the production one: SIP over UDP, RTP with G.711, the bridge, the
Realtime client over a websocket.
"""

from __future__ import annotations

import argparse
from importlib.resources import files
from pathlib import Path

import numpy as np

from telephony_agent.call.record import CallRecord, TranscriptLine
from telephony_agent.caller.outbound_call import CallOptions, place_call
from telephony_agent.commands.call import write_recording
from telephony_agent.commands.runtime import open_provider
from telephony_agent.config import KNOWN_CODECS, load_settings
from telephony_agent.errors import UsageError
from telephony_agent.media.audiofile import decode_audio_file
from telephony_agent.metrics import LatencySamples
from telephony_agent.server.sip_server import AgentSipServer
from telephony_agent.switchboard import Switchboard

SAMPLE = "book_flight.wav"
CALLER_RATE = 48000
PAUSE_BETWEEN_TURNS_S = 5.0


def _sample_speech() -> np.ndarray:
    path = Path(str(files("telephony_agent") / "samples" / SAMPLE))
    return decode_audio_file(path, CALLER_RATE)


async def run_demo(args: argparse.Namespace) -> int:
    codec = {c.lower(): c for c in KNOWN_CODECS}.get(args.codec.lower())
    if codec is None:
        raise UsageError(f"--codec {args.codec!r}: expected one of {', '.join(KNOWN_CODECS)}")
    _check_output(args.record)
    overrides = {
        "provider": {"name": args.provider or "local"},
        "sip": {"listen": "127.0.0.1:0", "transports": "udp", "t1_ms": 100},
        "log": {"level": args.log_level or "warning"},
    }
    settings = load_settings(args.config, overrides=overrides)
    runtime = await open_provider(settings)

    def show(_call_id: str, line: TranscriptLine) -> None:
        print(f"  [{line.t:5.2f} s] {line.speaker:>6}: {line.text}", flush=True)

    board = Switchboard(runtime.deployment(settings))
    server = AgentSipServer(board, on_transcript=show)
    try:
        await server.start()
        uri = f"sip:agent@127.0.0.1:{server.sip_port}"
        speech = _sample_speech()
        pause = np.zeros(int(PAUSE_BETWEEN_TURNS_S * CALLER_RATE), dtype=np.int16)
        print(f"calling {uri} ({codec}), speaking {SAMPLE} twice...", flush=True)
        result = await place_call(
            CallOptions(
                uri=uri,
                audio=np.concatenate([speech, pause, speech]),
                audio_rate=CALLER_RATE,
                codecs=(codec,),
                tail_s=4.0,
                t1_s=0.1,
            )
        )
    finally:
        await server.shutdown()
        await board.close()
        await runtime.close()
    print(result.summary())
    if not result.answered:
        return 1
    write_recording(result, str(args.record))
    records = [s.record for s in server.finished if s.record is not None]
    for line in _latency_lines(records):
        print(line)
    heard_s = result.recording.size / result.recording_rate
    print(f"wrote {args.record} ({heard_s:.1f} s heard by the caller)")
    return 0


def _latency_lines(records: list[CallRecord]) -> list[str]:
    lines: list[str] = []
    uplink = LatencySamples()
    downlink = LatencySamples()
    for record in records:
        for index, turn in enumerate(record.latencies, 1):
            lines.append(
                f"turn {index}: end of speech -> first model audio "
                f"{turn.to_first_delta_ms:.0f} ms, -> first RTP frame "
                f"{turn.to_first_frame_ms:.0f} ms"
            )
        uplink.extend(record.uplink_latency)
        downlink.extend(record.downlink_latency)
    lines.append(f"bridge uplink (RTP in -> websocket sent): {uplink.summary().describe()}")
    lines.append(f"bridge downlink (model audio in -> RTP out): {downlink.summary().describe()}")
    return lines


def _check_output(path: Path) -> None:
    parent = path.resolve().parent
    if not parent.is_dir():
        raise UsageError(f"--record {path}: folder {parent} does not exist")
