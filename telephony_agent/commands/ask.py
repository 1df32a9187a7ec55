"""`telephony-agent ask INPUT`: one spoken question in, one spoken answer out.

The classic voice-agent example as a command: decode any audio file to 24 kHz mono
PCM16, stream it in 20 ms chunks, add 500 ms of silence, commit, ask for a response,
print the answer text and save the answer audio. Manual turns (no server VAD) so
the result does not depend on how the file ends.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
from pathlib import Path

import numpy as np

from telephony_agent.audio.wav import WavWriter
from telephony_agent.commands.runtime import open_provider, settings_from_args
from telephony_agent.errors import UsageError
from telephony_agent.media.audiofile import decode_audio_file
from telephony_agent.realtime.client import RealtimeSession
from telephony_agent.realtime.errors import RealtimeError
from telephony_agent.realtime.events import (
    AssistantTranscriptDelta,
    AssistantTranscriptDone,
    AudioDelta,
    ResponseCreated,
    ResponseDone,
    SessionClosed,
    SessionUpdated,
)
from telephony_agent.switchboard.session import session_config

MODEL_RATE = 24000
TRAILING_SILENCE_MS = 500


async def run_ask(args: argparse.Namespace) -> int:
    settings = settings_from_args(args)
    pcm = decode_audio_file(args.input, MODEL_RATE)
    _check_output_path(args.output)
    runtime = await open_provider(settings)
    try:
        config = session_config(
            settings, runtime.resolved.name, dialect=runtime.endpoint.dialect, manual_turns=True
        )
        session = RealtimeSession(
            runtime.endpoint,
            config,
            chunk_ms=settings.realtime.chunk_ms,
            ready_timeout_s=settings.realtime.ready_timeout_s,
            max_reconnects=0,
        )
        await session.connect()
        try:
            answer = await asyncio.wait_for(_ask_once(session, pcm), timeout=args.timeout)
        except TimeoutError:
            raise RealtimeError(f"no complete answer within {args.timeout:g} s") from None
        finally:
            await session.close()
    finally:
        await runtime.close()
    text, audio, rate, first_audio_s = answer
    with WavWriter(args.output, rate) as wav:
        wav.write(audio)
    seconds = audio.size / rate
    print(f"answer: {text or '(no text)'}")
    latency = f", first audio after {first_audio_s * 1000:.0f} ms" if first_audio_s else ""
    print(f"wrote {args.output} ({seconds:.2f} s at {rate} Hz{latency})", file=sys.stderr)
    return 0


async def _ask_once(
    session: RealtimeSession, pcm: np.ndarray
) -> tuple[str, np.ndarray, int, float | None]:
    silence = np.zeros(MODEL_RATE * TRAILING_SILENCE_MS // 1000, dtype=np.int16)
    session.append_audio(np.concatenate([pcm, silence]).astype("<i2").tobytes())
    session.commit()
    sent_at = time.monotonic()
    session.create_response()
    chunks: list[bytes] = []
    text_parts: list[str] = []
    final_text: str | None = None
    response_id: str | None = None
    first_audio: float | None = None
    rate = session.output_rate
    async for event in session.events():
        if isinstance(event, SessionUpdated) and event.output_rate:
            rate = event.output_rate
        elif isinstance(event, ResponseCreated) and response_id is None:
            response_id = event.response_id
        elif isinstance(event, AudioDelta) and event.response_id == response_id:
            if first_audio is None:
                first_audio = time.monotonic() - sent_at
            chunks.append(event.audio)
        elif isinstance(event, AssistantTranscriptDelta) and event.response_id == response_id:
            text_parts.append(event.delta)
        elif isinstance(event, AssistantTranscriptDone) and event.response_id == response_id:
            final_text = event.text
        elif isinstance(event, ResponseDone) and event.response_id == response_id:
            if event.status != "completed":
                detail = f" ({event.error})" if event.error else ""
                raise RealtimeError(f"the model's response ended as {event.status}{detail}")
            break
        elif isinstance(event, SessionClosed):
            raise RealtimeError(f"the Realtime session closed before answering: {event.reason}")
    data = b"".join(chunks)
    audio = np.frombuffer(data[: len(data) & ~1], dtype="<i2").astype(np.int16)
    text = final_text if final_text is not None else "".join(text_parts)
    return text.strip(), audio, rate, first_audio


def _check_output_path(path: Path) -> None:
    parent = path.resolve().parent
    if not parent.is_dir():
        raise UsageError(f"-o {path}: folder {parent} does not exist")
    if path.is_dir():
        raise UsageError(f"-o {path}: is a folder, expected a .wav file path")
