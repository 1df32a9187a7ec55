"""`telephony-agent call SIP_URI --play FILE`: check a deployment like a caller would.

Dials, speaks the file as the caller's voice, records what it hears, hangs up
and prints one line: answered or not, codec, seconds, turn latencies as heard.
Exit 0 when the call was answered, 1 when it was not.
"""

from __future__ import annotations

import argparse
import sys

from telephony_agent.audio.wav import WavWriter
from telephony_agent.caller.outbound_call import CallOptions, CallResult, place_call
from telephony_agent.config import KNOWN_CODECS
from telephony_agent.errors import UsageError
from telephony_agent.logs import configure_logging
from telephony_agent.media.audiofile import decode_audio_file
from telephony_agent.sip.message import SipParseError, SipUri

CALLER_RATE = 48000


def call_options(args: argparse.Namespace) -> CallOptions:
    """Validate what was typed into the options of one call."""
    try:
        uri = SipUri.parse(args.uri)
    except SipParseError:
        raise UsageError(
            f"{args.uri!r}: expected a SIP URI like sip:agent@127.0.0.1:5060"
        ) from None
    if uri.scheme not in ("sip", "sips") or not uri.host:
        raise UsageError(f"{args.uri!r}: expected a SIP URI like sip:agent@127.0.0.1:5060")
    by_lower = {name.lower(): name for name in KNOWN_CODECS}
    codecs = []
    for name in args.codecs.split(","):
        known = by_lower.get(name.strip().lower())
        if known is None:
            raise UsageError(
                f"--codecs {args.codecs!r}: expected names from {', '.join(KNOWN_CODECS)}"
            )
        codecs.append(known)
    digits = args.dtmf or ""
    if any(d not in "0123456789*#ABCDabcd" for d in digits):
        raise UsageError(f"--dtmf {digits!r}: expected digits 0-9, *, #, A-D")
    if args.duration is not None and args.duration <= 0:
        raise UsageError("--duration: expected a positive number of seconds")
    audio = decode_audio_file(args.play, CALLER_RATE)
    return CallOptions(
        uri=str(uri),
        audio=audio,
        audio_rate=CALLER_RATE,
        codecs=tuple(codecs),
        duration_s=args.duration,
        dtmf=digits.upper(),
        transport=args.transport.upper(),
        tls_ca_file=args.tls_ca,
        srtp=args.srtp,
    )


def write_recording(result: CallResult, path: str) -> None:
    with WavWriter(path, result.recording_rate) as wav:
        wav.write(result.recording)


async def run_call(args: argparse.Namespace) -> int:
    configure_logging(args.log_level or "warning", "auto")
    options = call_options(args)
    result = await place_call(options)
    if args.record and result.answered:
        write_recording(result, str(args.record))
    print(result.summary())
    if args.record and result.answered:
        seconds = result.recording.size / result.recording_rate
        print(f"wrote {args.record} ({seconds:.1f} s heard)", file=sys.stderr)
    return 0 if result.answered else 1
