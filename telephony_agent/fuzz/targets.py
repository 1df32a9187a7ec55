"""What each fuzz target checks, one function per parser, bytes in, nothing out.

Why more than "does it raise": each parser promises one error type for bad input
(`SipParseError`, `SdpError`, `ValueError`, `MalformedEvent`, `ConfigError`), and
the code after it relies on what it accepted. So a check also drives whatever the
server does next with an accepted value — the transaction layer, the dialog,
the response we would send (which must parse again), SDP negotiation, the RTP
receiver — and any other exception, or an answer we could not parse back, is
a finding. No atheris here: the tests replay the seed corpus and every past
finding through these same functions.
"""

from __future__ import annotations

import contextlib
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from telephony_agent.config import load_settings
from telephony_agent.errors import ConfigError
from telephony_agent.media.rtp.codecs import make_codec
from telephony_agent.media.rtp.receiver import InboundStream
from telephony_agent.media.rtp.rtcp import RtcpReporter, parse_compound
from telephony_agent.media.rtp.wire import RtpPacket
from telephony_agent.realtime.dialect import normalize_event_type
from telephony_agent.realtime.parse import MalformedEvent, decode_frame, parse_event
from telephony_agent.sip.dialog import Dialog, make_response, peer_for_uri
from telephony_agent.sip.message import SipParseError, SipRequest, SipResponse
from telephony_agent.sip.parser import StreamFramer, parse_message
from telephony_agent.sip.sdp import (
    SdpError,
    accept_answer,
    build_offer,
    negotiate_answer,
    parse_sdp,
    with_direction,
)
from telephony_agent.sip.transaction import Peer, TransactionLayer, response_peer

__all__ = ["TARGETS", "FuzzFinding", "FuzzTarget"]


class FuzzFinding(AssertionError):
    """A parser broke its promise: accepted input the code after it cannot use."""


def _expect(condition: bool, what: str) -> None:
    if not condition:
        raise FuzzFinding(what)


@dataclass(frozen=True)
class FuzzTarget:
    """One parser: its check, and the largest input worth trying."""

    name: str
    check: Callable[[bytes], None]
    max_len: int


_PEER = Peer("UDP", "192.0.2.99", 5099)


# ---------------------------------------------------------------------- SIP


def check_sip_message(data: bytes) -> None:
    """Datagram parse, TCP framing, and what the server does with what parsed."""
    _framed(data)
    try:
        message = parse_message(data)
    except SipParseError as error:
        _expect(error.status in (400, 513), f"status {error.status}")
        if error.partial is not None:
            make_response(error.partial, error.status, "Bad Request").to_bytes()
            response_peer(error.partial, _PEER)
        return
    again = parse_message(message.to_bytes())
    _expect(type(again) is type(message), "a different kind of message after a round trip")
    layer = TransactionLayer()
    layer.on_message(message, _PEER, 0.0)
    layer.take_outputs()
    if isinstance(message, SipResponse):
        return
    _answer_must_parse(message)
    if message.method == "INVITE":
        dialog = Dialog.for_uas(message, "fuzztag", "sip:agent@192.0.2.1:5060", "UDP")
        peer_for_uri(dialog.next_hop_uri(), dialog.transport)
        bye = dialog.create_request("BYE", "192.0.2.1", 5060)
        parse_message(bye.to_bytes())


def _answer_must_parse(request: SipRequest) -> None:
    """Every answer we would send to an accepted request is itself a valid message."""
    _expect(request.max_forwards is None or 0 <= request.max_forwards <= 255, "Max-Forwards")
    response_peer(request, _PEER)
    for status in (100, 200, 486):
        response = make_response(request, status, to_tag="fuzztag")
        try:
            parsed = parse_message(response.to_bytes())
        except SipParseError as error:
            raise FuzzFinding(f"our {status} does not parse: {error.reason}") from None
        _expect(isinstance(parsed, SipResponse), "our response parsed as a request")


def _framed(data: bytes) -> None:
    framer = StreamFramer()
    middle = len(data) // 2
    for chunk in (data[:middle], data[middle:]):
        for item in framer.feed(chunk):
            _expect(isinstance(item, SipRequest | SipResponse | SipParseError), "framer item")


# ---------------------------------------------------------------------- SDP


def check_sdp(data: bytes) -> None:
    """Parse, re-serialise, answer as the UAS, and accept as an answer to our offer."""
    try:
        description = parse_sdp(data)
    except SdpError:
        return
    again = parse_sdp(description.to_bytes())
    _expect(again == description, "SDP changes on a round trip")
    try:
        negotiated = negotiate_answer(
            description,
            local_address="192.0.2.1",
            local_port=40000,
            session_id=1,
            session_version=1,
        )
    except SdpError:
        pass
    else:
        host, port = negotiated.remote_rtp
        _expect(bool(host) and 0 <= port <= 65535, f"remote RTP {host!r}:{port}")
        answer = parse_sdp(negotiated.answer.to_bytes())
        with_direction(answer, negotiated.direction, 2).to_bytes()
    offer = build_offer(
        local_address="192.0.2.1",
        local_port=40000,
        codecs=("opus", "G722", "PCMA", "PCMU"),
        session_id=1,
        session_version=1,
    )
    with contextlib.suppress(SdpError):
        accept_answer(offer, description)


# ---------------------------------------------------------------------- RTP, RTCP, RFC 4733

_CODECS = ("PCMU", "PCMA", "G722", "opus")


def check_rtp(data: bytes) -> None:
    """The datagram as RTCP, then as a run of length-prefixed RTP packets fed to the
    receiver (reorder, loss fill, decode, RFC 4733) the way a call leg feeds it."""
    try:
        report = parse_compound(data)
    except ValueError:
        pass
    else:
        RtcpReporter(0x1234, "fuzz@x", interval_s=5.0).on_report(report, 1.0, 1.0)
    if not data:
        return
    codec = make_codec(_CODECS[data[0] % len(_CODECS)])
    stream = InboundStream(codec, 0, dtmf_payload_type=101)
    now = 0.0
    position = 1
    while position < len(data):
        size = data[position]
        packet_bytes = data[position + 1 : position + 1 + size]
        position += 1 + size
        now += 0.02
        try:
            packet = RtpPacket.parse(packet_bytes)
        except (ValueError, IndexError):
            continue  # what the leg counts as malformed
        stream.push(packet, now)
        stream.poll(now)
    stream.flush(now + 1.0)


# ---------------------------------------------------------------------- Realtime events


#: Event types and field names the parser knows (GA and beta spellings), for inputs
#: that are not JSON: the bytes then choose an event and the values of its fields.
_EVENT_TYPES = (
    "session.created",
    "session.updated",
    "input_audio_buffer.speech_started",
    "input_audio_buffer.speech_stopped",
    "input_audio_buffer.committed",
    "input_audio_buffer.timeout_triggered",
    "conversation.item.input_audio_transcription.completed",
    "conversation.item.input_audio_transcription.delta",
    "conversation.item.added",
    "conversation.item.created",
    "conversation.item.truncated",
    "response.created",
    "response.output_audio.delta",
    "response.audio.delta",
    "response.output_audio.done",
    "response.output_audio_transcript.delta",
    "response.audio_transcript.done",
    "response.output_text.done",
    "response.function_call_arguments.done",
    "response.output_item.done",
    "response.done",
    "error",
)
_EVENT_FIELDS = (
    "event_id",
    "item_id",
    "response_id",
    "previous_item_id",
    "delta",
    "transcript",
    "text",
    "audio_start_ms",
    "audio_end_ms",
    "call_id",
    "name",
    "arguments",
    "session",
    "response",
    "error",
    "item",
    "audio",
    "input",
    "output",
    "format",
    "rate",
    "type",
    "id",
    "role",
    "status",
    "status_details",
    "reason",
    "usage",
    "code",
    "message",
    "input_audio_format",
    "output_audio_format",
)


class _Choices:
    """Reads choices off the input bytes; zeros once they run out."""

    def __init__(self, data: bytes) -> None:
        self._data = data
        self._at = 0

    def byte(self) -> int:
        value = self._data[self._at] if self._at < len(self._data) else 0
        self._at += 1
        return value

    def text(self) -> str:
        size = self.byte() % 24
        chunk = self._data[self._at : self._at + size]
        self._at += size
        return chunk.decode("utf-8", "replace")

    def value(self, depth: int = 0) -> object:
        """Any value JSON can decode to, NaN and infinities included (json.loads takes them)."""
        kind = self.byte() % (12 if depth < 3 else 9)
        numbers: tuple[object, ...] = (
            0,
            -1,
            2**63,
            10**400,
            1.5,
            1e308,
            float("inf"),
            float("-inf"),
            float("nan"),
        )
        simple: tuple[object, ...] = (None, True, False, "", "AAEC", "!!!", self.text())
        if kind < 3:
            return simple[self.byte() % len(simple)]
        if kind < 6:
            return numbers[self.byte() % len(numbers)]
        if kind < 9:
            return self.text()
        if kind < 11:
            return {
                _EVENT_FIELDS[self.byte() % len(_EVENT_FIELDS)]: self.value(depth + 1)
                for _ in range(self.byte() % 5)
            }
        return [self.value(depth + 1) for _ in range(self.byte() % 4)]


def _structured_event(data: bytes) -> dict[str, object]:
    choices = _Choices(data)
    obj: dict[str, object] = {"type": _EVENT_TYPES[choices.byte() % len(_EVENT_TYPES)]}
    for _ in range(choices.byte() % 8):
        obj[_EVENT_FIELDS[choices.byte() % len(_EVENT_FIELDS)]] = choices.value()
    return obj


def check_realtime_events(data: bytes) -> None:
    """A server text frame as the protocol reads it: JSON object, event type, typed event.

    Mutated JSON is rarely JSON, so bytes that do not decode as an event instead
    choose one: a known type and fields of every JSON kind, nested.
    """
    try:
        obj = decode_frame(data.decode("utf-8"))
    except UnicodeDecodeError:
        obj = None
    if obj is None:
        obj = _structured_event(data)
    normalize_event_type(str(obj["type"]))
    with contextlib.suppress(MalformedEvent):
        parse_event(obj)


# ---------------------------------------------------------------------- settings


class _SettingsFile:
    """One scratch file, rewritten per input: load_settings reads a path."""

    def __init__(self) -> None:
        self._directory: tempfile.TemporaryDirectory[str] | None = None

    @property
    def path(self) -> Path:
        if self._directory is None:
            self._directory = tempfile.TemporaryDirectory(prefix="fuzz-settings-")
        return Path(self._directory.name) / "agent.toml"


_SETTINGS_FILE = _SettingsFile()


def check_settings(data: bytes) -> None:
    """A settings file: loaded with every check, or refused with one ConfigError."""
    path = _SETTINGS_FILE.path
    path.write_bytes(data)
    try:
        load_settings(path, environ={})
    except ConfigError as error:
        _expect("\n" not in str(error).strip(), "a ConfigError of more than one line")


TARGETS: dict[str, FuzzTarget] = {
    target.name: target
    for target in (
        FuzzTarget("sip_message", check_sip_message, 8192),
        FuzzTarget("sdp", check_sdp, 4096),
        FuzzTarget("rtp", check_rtp, 2048),
        FuzzTarget("realtime_events", check_realtime_events, 4096),
        FuzzTarget("settings", check_settings, 4096),
    )
}
