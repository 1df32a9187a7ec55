"""SDP (RFC 8866) parse/serialise and the offer/answer negotiation of RFC 3264.

Why hand-written rather than a library's parser: a SIP trunk offers ``0 8 101``
with no ``a=rtpmap`` for the static types 0 and 8 (RFC 3551 makes them
optional), and it sends ``a=ptime``; a parser that drops either cannot answer
the most common offer in telephony. The parser faces untrusted input straight
off the network, so it bounds every size it reads and raises `SdpError` (a
`ValueError`) and nothing else, whatever the input; the SIP layer answers that
with ``400``/``488`` instead of crashing a transaction.

Everything here is pure: dataclasses in, dataclasses out, no I/O, no clocks.
Bumping ``o=`` session versions between re-offers is the caller's job
(RFC 3264 §8), because only the dialog knows what it sent last.

What we negotiate (RFC 3264 §6): one audio stream over plain RTP (``RTP/AVP`` or
``RTP/AVPF``) with one of PCMU, PCMA, G722 (RFC 3551) or Opus (RFC 7587,
``opus/48000/2`` only) plus ``telephone-event`` (RFC 4733) when offered. Every
other m-line, including a second audio stream and SRTP/DTLS profiles we cannot
key, is refused with port 0 so the answer keeps the offer's m-line count.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Literal

__all__ = [
    "MAX_FORMATS",
    "MAX_LINE_CHARS",
    "MAX_MEDIA_SECTIONS",
    "MAX_SDP_BYTES",
    "MAX_SDP_LINES",
    "STATIC_PAYLOAD_TYPES",
    "SUPPORTED_CODECS",
    "Attribute",
    "Connection",
    "Direction",
    "Fmtp",
    "MediaDescription",
    "Negotiated",
    "NoCommonCodec",
    "Origin",
    "Rtcp",
    "RtpMap",
    "SdpError",
    "SessionDescription",
    "Timing",
    "accept_answer",
    "build_offer",
    "negotiate_answer",
    "parse_sdp",
    "with_direction",
]

#: Largest body accepted: a SIP message cannot be larger, so neither can its SDP.
MAX_SDP_BYTES = 65_535
#: A WebRTC offer with a dozen m-lines is a few hundred lines; ten times that is absurd.
MAX_SDP_LINES = 2_000
MAX_LINE_CHARS = 4_096
MAX_MEDIA_SECTIONS = 64
#: RTP payload types are 7 bits; non-RTP format lists get the same bound.
MAX_FORMATS = 128

Direction = Literal["sendrecv", "sendonly", "recvonly", "inactive"]
_DIRECTIONS: dict[str, Direction] = {
    "sendrecv": "sendrecv",
    "sendonly": "sendonly",
    "recvonly": "recvonly",
    "inactive": "inactive",
}
#: RFC 3264 §6.1: the answer's direction is the offer's seen from the other end.
_MIRROR: dict[Direction, Direction] = {
    "sendrecv": "sendrecv",
    "sendonly": "recvonly",
    "recvonly": "sendonly",
    "inactive": "inactive",
}

# Field order of RFC 8866 §5; unknown-but-legal lines are re-emitted in their slot.
_SESSION_ORDER = "vosiuepcbtrzka"
_MEDIA_ORDER = "icbka"
_SESSION_ONLY = frozenset("vosuepzrt")

_DIGITS_RE = re.compile(r"[0-9]+")
_DECIMAL_RE = re.compile(r"([0-9]{1,9})(?:\.[0-9]{1,9})?")
_HOSTNAME_RE = re.compile(r"[A-Za-z0-9](?:[A-Za-z0-9.\-]*[A-Za-z0-9.])?")
_TTL_RE = re.compile(r"[0-9]{1,3}(?:/[0-9]{1,5})?")
_IPV4_LIKE_RE = re.compile(r"[0-9.]+")


class SdpError(ValueError):
    """A session description we cannot use; the message says why in plain words."""


class NoCommonCodec(SdpError):
    """The offer is well formed but shares no audio codec with us (SIP answers ``488``)."""


# ---------------------------------------------------------------------- model


@dataclass(frozen=True)
class Origin:
    """The ``o=`` line: identifies the session and, through the version, its revisions."""

    username: str
    session_id: int
    session_version: int
    address: str
    address_type: str = "IP4"
    net_type: str = "IN"


@dataclass(frozen=True)
class Connection:
    """A ``c=`` line. ``address`` is the token as written (a multicast ``/ttl`` kept)."""

    address: str
    address_type: str = "IP4"
    net_type: str = "IN"

    @property
    def host(self) -> str:
        """The address without any multicast ``/ttl/count`` suffix: where RTP goes."""
        return self.address.split("/", 1)[0]

    @property
    def is_unspecified(self) -> bool:
        """True for ``0.0.0.0`` (or ``::``): RFC 2543 hold, meaning "send nothing here"."""
        try:
            return ipaddress.ip_address(self.host).is_unspecified
        except ValueError:
            return False


@dataclass(frozen=True)
class Timing:
    """The ``t=`` line; telephony always sends ``t=0 0`` (an unbounded session)."""

    start: int = 0
    stop: int = 0


@dataclass(frozen=True)
class RtpMap:
    """An ``a=rtpmap`` entry, or the RFC 3551 static mapping it stands in for."""

    payload_type: int
    encoding: str
    clock_rate: int
    channels: int = 1

    def matches(self, encoding: str, clock_rate: int, channels: int) -> bool:
        """Encoding names are case-insensitive (RFC 4855 §3); rates and channels are not."""
        return (
            self.encoding.casefold() == encoding.casefold()
            and self.clock_rate == clock_rate
            and self.channels == channels
        )


@dataclass(frozen=True)
class Fmtp:
    """An ``a=fmtp`` entry; parameters stay a string because each codec defines its own."""

    payload_type: int
    parameters: str


@dataclass(frozen=True)
class Rtcp:
    """``a=rtcp`` (RFC 3605): the RTCP port, when it is not the RTP port plus one."""

    port: int
    connection: Connection | None = None


@dataclass(frozen=True)
class Attribute:
    """Any other ``a=`` line. ``value`` is None for a flag (``a=rtcp-mux``)."""

    name: str
    value: str | None = None

    def to_line(self) -> str:
        return f"a={self.name}" if self.value is None else f"a={self.name}:{self.value}"


#: RFC 3551 tables 4 and 5: what a payload type below 96 means without an rtpmap.
STATIC_PAYLOAD_TYPES: Mapping[int, RtpMap] = {
    pt: RtpMap(pt, name, rate, channels)
    for pt, name, rate, channels in (
        (0, "PCMU", 8000, 1),
        (3, "GSM", 8000, 1),
        (4, "G723", 8000, 1),
        (5, "DVI4", 8000, 1),
        (6, "DVI4", 16000, 1),
        (7, "LPC", 8000, 1),
        (8, "PCMA", 8000, 1),
        (9, "G722", 8000, 1),
        (10, "L16", 44100, 2),
        (11, "L16", 44100, 1),
        (12, "QCELP", 8000, 1),
        (13, "CN", 8000, 1),
        (14, "MPA", 90000, 1),
        (15, "G728", 8000, 1),
        (16, "DVI4", 11025, 1),
        (17, "DVI4", 22050, 1),
        (18, "G729", 8000, 1),
        (25, "CelB", 90000, 1),
        (26, "JPEG", 90000, 1),
        (28, "nv", 90000, 1),
        (31, "H261", 90000, 1),
        (32, "MPV", 90000, 1),
        (33, "MP2T", 90000, 1),
        (34, "H263", 90000, 1),
    )
}


@dataclass(frozen=True)
class _Codec:
    name: str
    clock_rate: int
    channels: int
    sample_rate: int
    offer_payload_type: int
    offer_fmtp: str | None


# Why G722 says 8000: RFC 1890 assigned that RTP clock by mistake and RFC 3551 §4.5.2 kept it
# for compatibility, although G.722 samples at 16 kHz.
_CODECS: dict[str, _Codec] = {
    "opus": _Codec("opus", 48000, 2, 48000, 111, "minptime=10;useinbandfec=1"),
    "g722": _Codec("G722", 8000, 1, 16000, 9, None),
    "pcma": _Codec("PCMA", 8000, 1, 8000, 8, None),
    "pcmu": _Codec("PCMU", 8000, 1, 8000, 0, None),
}
#: The codec names `negotiate_answer` and `build_offer` accept, in our default preference.
SUPPORTED_CODECS: tuple[str, ...] = tuple(c.name for c in _CODECS.values())
_TELEPHONE_EVENT = "telephone-event"
_OFFER_TELEPHONE_EVENT_PT = 101
_OFFER_TELEPHONE_EVENT_FMTP = "0-16"
_PTIME_MS = 20
_NEGOTIABLE_PROTOS = frozenset({"RTP/AVP", "RTP/AVPF"})


@dataclass(frozen=True)
class MediaDescription:
    """One m-line and its section. Port 0 means the stream is refused or disabled.

    ``rtpmaps`` and ``fmtps`` are kept in the order of the format list (entries for
    payload types not listed come last, as written), so that parse → serialise →
    parse gives back an equal value whatever order the sender used.
    """

    media: str
    port: int
    proto: str
    formats: tuple[str, ...]
    port_count: int | None = None
    connection: Connection | None = None
    rtpmaps: tuple[RtpMap, ...] = ()
    fmtps: tuple[Fmtp, ...] = ()
    ptime: int | None = None
    maxptime: int | None = None
    direction: Direction | None = None
    rtcp: Rtcp | None = None
    attributes: tuple[Attribute, ...] = ()
    #: ``i=``, ``b=`` and ``k=`` lines as (letter, value), kept so re-emission loses nothing.
    other_lines: tuple[tuple[str, str], ...] = ()

    @property
    def is_rtp(self) -> bool:
        """RTP profiles (RTP/AVP, RTP/SAVP, UDP/TLS/RTP/SAVPF, ...) carry payload-type formats."""
        return _is_rtp_proto(self.proto)

    @property
    def payload_types(self) -> tuple[int, ...]:
        """The formats as payload-type numbers; empty for non-RTP media (T.38, data channels)."""
        if not self.is_rtp:
            return ()
        return tuple(int(f) for f in self.formats if _DIGITS_RE.fullmatch(f) and len(f) <= 3)

    def rtpmap_for(self, payload_type: int) -> RtpMap | None:
        """The explicit rtpmap, else the RFC 3551 static one, else None (unknown dynamic type)."""
        for rtpmap in self.rtpmaps:
            if rtpmap.payload_type == payload_type:
                return rtpmap
        return STATIC_PAYLOAD_TYPES.get(payload_type)

    def fmtp_for(self, payload_type: int) -> str | None:
        for fmtp in self.fmtps:
            if fmtp.payload_type == payload_type:
                return fmtp.parameters
        return None

    def to_lines(self) -> list[str]:
        port = str(self.port) if self.port_count is None else f"{self.port}/{self.port_count}"
        lines = [" ".join((f"m={self.media}", port, self.proto, *self.formats))]
        tagged = [(letter, f"{letter}={value}") for letter, value in self.other_lines]
        if self.connection is not None:
            tagged.append(("c", _connection_line(self.connection)))
        tagged.sort(key=lambda item: _MEDIA_ORDER.index(item[0]))
        lines.extend(line for _, line in tagged)
        lines.extend(self._payload_lines())
        if self.ptime is not None:
            lines.append(f"a=ptime:{self.ptime}")
        if self.maxptime is not None:
            lines.append(f"a=maxptime:{self.maxptime}")
        if self.rtcp is not None:
            rtcp = f"a=rtcp:{self.rtcp.port}"
            if self.rtcp.connection is not None:
                rtcp += " " + _connection_line(self.rtcp.connection)[2:]
            lines.append(rtcp)
        if self.direction is not None:
            lines.append(f"a={self.direction}")
        lines.extend(attribute.to_line() for attribute in self.attributes)
        return lines

    def _payload_lines(self) -> list[str]:
        order = _format_order(self.formats)
        tagged: list[tuple[int, int, str]] = [
            (
                order.get(r.payload_type, len(order)),
                0,
                f"a=rtpmap:{r.payload_type} {_rtpmap_value(r)}",
            )
            for r in self.rtpmaps
        ]
        tagged.extend(
            (
                order.get(f.payload_type, len(order)),
                1,
                f"a=fmtp:{f.payload_type} {f.parameters}".rstrip(" "),
            )
            for f in self.fmtps
        )
        tagged.sort(key=lambda item: (item[0], item[1]))  # stable: leftovers keep their order
        return [line for _, _, line in tagged]


@dataclass(frozen=True)
class SessionDescription:
    """A whole SDP body. Media-level ``c=`` and direction override the session's."""

    origin: Origin
    media: tuple[MediaDescription, ...]
    session_name: str = "-"
    connection: Connection | None = None
    timing: Timing = field(default_factory=Timing)
    direction: Direction | None = None
    attributes: tuple[Attribute, ...] = ()
    #: ``i= u= e= p= b= r= z= k=`` and any further ``t=`` lines, as (letter, value).
    other_lines: tuple[tuple[str, str], ...] = ()

    def connection_for(self, media: MediaDescription) -> Connection | None:
        """The effective ``c=`` of a stream (RFC 8866 §5.7: media level wins)."""
        return media.connection if media.connection is not None else self.connection

    def direction_for(self, media: MediaDescription) -> Direction:
        """The effective direction of a stream (RFC 3264 §5.1: default sendrecv)."""
        if media.direction is not None:
            return media.direction
        return self.direction if self.direction is not None else "sendrecv"

    def to_text(self) -> str:
        """Serialise with CRLF line ends in RFC 8866 field order."""
        o = self.origin
        tagged: list[tuple[str, str]] = [
            ("v", "v=0"),
            (
                "o",
                f"o={o.username} {o.session_id} {o.session_version} "
                f"{o.net_type} {o.address_type} {o.address}",
            ),
            ("s", f"s={self.session_name}"),
            ("t", f"t={self.timing.start} {self.timing.stop}"),
        ]
        if self.connection is not None:
            tagged.append(("c", _connection_line(self.connection)))
        tagged.extend((letter, f"{letter}={value}") for letter, value in self.other_lines)
        tagged.sort(key=lambda item: _SESSION_ORDER.index(item[0]))  # stable: first t= first
        lines = [line for _, line in tagged]
        lines.extend(attribute.to_line() for attribute in self.attributes)
        if self.direction is not None:
            lines.append(f"a={self.direction}")
        for media in self.media:
            lines.extend(media.to_lines())
        return "\r\n".join(lines) + "\r\n"

    def to_bytes(self) -> bytes:
        return self.to_text().encode("utf-8")


def _connection_line(connection: Connection) -> str:
    return f"c={connection.net_type} {connection.address_type} {connection.address}"


def _rtpmap_value(rtpmap: RtpMap) -> str:
    value = f"{rtpmap.encoding}/{rtpmap.clock_rate}"
    return value if rtpmap.channels == 1 else f"{value}/{rtpmap.channels}"


def _format_order(formats: Sequence[str]) -> dict[int, int]:
    order: dict[int, int] = {}
    for index, fmt in enumerate(formats):
        if _DIGITS_RE.fullmatch(fmt) and len(fmt) <= 3:
            order.setdefault(int(fmt), index)
    return order


def _in_field_order(lines: list[tuple[str, str]], order: str) -> tuple[tuple[str, str], ...]:
    """Stored in the order they are emitted, so a parsed description equals its re-parse."""
    return tuple(sorted(lines, key=lambda item: order.index(item[0])))


def _is_rtp_proto(proto: str) -> bool:
    return "RTP" in proto.upper().split("/")


# ---------------------------------------------------------------------- parsing


def parse_sdp(data: bytes | str) -> SessionDescription:
    """Parse an SDP body (CRLF or bare LF line ends).

    Raises `SdpError` and nothing else, whatever the input: it is read straight
    off the network, and any other exception would escape the SIP transaction.
    """
    text = _decode(data)
    if text.count("\n") > MAX_SDP_LINES:
        raise SdpError(f"SDP has more than {MAX_SDP_LINES} lines")
    lines: list[tuple[int, str, str]] = []
    for number, raw in enumerate(text.split("\n"), start=1):
        line = raw[:-1] if raw.endswith("\r") else raw
        line = line.rstrip(" \t")
        if not line:
            continue  # blank lines (a trailing one above all) carry nothing
        if len(line) > MAX_LINE_CHARS:
            raise SdpError(f"line {number} is longer than {MAX_LINE_CHARS} characters")
        if "\r" in line:
            raise SdpError(f"line {number} contains a bare CR")
        if len(line) < 2 or line[1] != "=" or not ("a" <= line[0] <= "z"):
            raise SdpError(f"line {number} is not '<letter>=<value>': {line[:40]!r}")
        lines.append((number, line[0], line[2:]))
    if not lines:
        raise SdpError("SDP is empty")
    return _Parser(lines).parse()


def _decode(data: bytes | str) -> str:
    too_large = SdpError(f"SDP is larger than {MAX_SDP_BYTES} bytes")
    if isinstance(data, str):
        if len(data) > MAX_SDP_BYTES:  # checked before encoding, which costs memory
            raise too_large
        try:
            raw = data.encode("utf-8")
        except UnicodeEncodeError:
            raise SdpError("SDP is not valid Unicode text") from None
        if len(raw) > MAX_SDP_BYTES:
            raise too_large
        text = data
    else:
        if len(data) > MAX_SDP_BYTES:
            raise too_large
        try:
            text = data.decode("utf-8")
        except UnicodeDecodeError:
            raise SdpError("SDP is not valid UTF-8") from None
    if "\x00" in text:
        raise SdpError("SDP contains a NUL character")
    return text


class _Parser:
    """One pass over the lines; a small class only to share the line-number context."""

    def __init__(self, lines: list[tuple[int, str, str]]) -> None:
        self.lines = lines
        self.number = 0

    def fail(self, reason: str) -> SdpError:
        return SdpError(f"line {self.number}: {reason}")

    def parse(self) -> SessionDescription:
        self.number, letter, value = self.lines[0]
        if letter != "v":
            raise self.fail("SDP must start with v=0")
        if value != "0":
            raise self.fail(f"unsupported SDP version v={value[:20]}")
        origin: Origin | None = None
        session_name: str | None = None
        connection: Connection | None = None
        timing: Timing | None = None
        attributes = _AttributeSet(self)
        other: list[tuple[str, str]] = []
        index = 1
        while index < len(self.lines):
            self.number, letter, value = self.lines[index]
            if letter == "m":
                break
            index += 1
            if letter == "v":
                raise self.fail("second v= line")
            if letter == "o":
                if origin is not None:
                    raise self.fail("second o= line")
                origin = self.origin(value)
            elif letter == "s":
                if session_name is not None:
                    raise self.fail("second s= line")
                session_name = value
            elif letter == "c":
                if connection is not None:
                    raise self.fail("second session-level c= line")
                connection = self.connection(value)
            elif letter == "t" and timing is None:
                timing = self.timing(value)
            elif letter == "a":
                attributes.add(value)
            elif letter in _SESSION_ORDER:
                other.append((letter, value))
            else:
                raise self.fail(f"unknown line type {letter}=")
        if origin is None:
            raise SdpError("SDP has no o= line")
        if session_name is None:
            raise SdpError("SDP has no s= line")
        if timing is None:
            raise SdpError("SDP has no t= line")
        media: list[MediaDescription] = []
        while index < len(self.lines):
            end = index + 1
            while end < len(self.lines) and self.lines[end][1] != "m":
                end += 1
            if len(media) >= MAX_MEDIA_SECTIONS:
                raise self.fail(f"more than {MAX_MEDIA_SECTIONS} m= lines")
            media.append(self.media_section(self.lines[index:end]))
            index = end
        if not media:
            raise SdpError("SDP has no m= line: it describes no media")
        for position, section in enumerate(media, start=1):
            if section.port != 0 and section.connection is None and connection is None:
                raise SdpError(
                    f"m={section.media} (m-line {position}) has no c= line"
                    " at media or session level"
                )
        return SessionDescription(
            origin=origin,
            media=tuple(media),
            session_name=session_name,
            connection=connection,
            timing=timing,
            direction=attributes.direction,
            attributes=tuple(attributes.generic),
            other_lines=_in_field_order(other, _SESSION_ORDER),
        )

    # -- single lines

    def origin(self, value: str) -> Origin:
        parts = value.split()
        if len(parts) != 6:
            raise self.fail("o= needs 6 fields: username id version nettype addrtype address")
        username, session_id, version, net_type, address_type, address = parts
        return Origin(
            username=username,
            session_id=self.integer(session_id, "o= session id", 0, None, digits=64),
            session_version=self.integer(version, "o= session version", 0, None, digits=64),
            address=address,
            address_type=address_type,
            net_type=net_type,
        )

    def connection(self, value: str) -> Connection:
        parts = value.split()
        if len(parts) != 3:
            raise self.fail("c= needs 3 fields: nettype addrtype address")
        return self.connection_fields(parts, "c=")

    def connection_fields(self, parts: Sequence[str], what: str) -> Connection:
        net_type, address_type, address = parts
        if net_type != "IN":
            raise self.fail(f"{what} network type {net_type[:20]!r} is not IN")
        if address_type not in ("IP4", "IP6"):
            raise self.fail(f"{what} address type {address_type[:20]!r} is not IP4 or IP6")
        host, _, suffix = address.partition("/")
        if suffix and not _TTL_RE.fullmatch(suffix):
            raise self.fail(f"{what} bad multicast suffix in {address[:60]!r}")
        if not _valid_host(host, address_type):
            raise self.fail(f"{what} bad {address_type} address {host[:60]!r}")
        return Connection(address=address, address_type=address_type, net_type=net_type)

    def timing(self, value: str) -> Timing:
        parts = value.split()
        if len(parts) != 2:
            raise self.fail("t= needs 2 fields: start stop")
        return Timing(
            start=self.integer(parts[0], "t= start time", 0, None, digits=20),
            stop=self.integer(parts[1], "t= stop time", 0, None, digits=20),
        )

    def integer(self, text: str, what: str, low: int, high: int | None, *, digits: int = 10) -> int:
        # A regex first: int() also takes " 1_0 " and non-ASCII digits.
        if not _DIGITS_RE.fullmatch(text) or len(text) > digits:
            raise self.fail(f"{what} {text[:20]!r} is not a number")
        number = int(text)
        if number < low or (high is not None and number > high):
            bound = f"{low}-{high}" if high is not None else f"at least {low}"
            raise self.fail(f"{what} {number} is out of range ({bound})")
        return number

    def milliseconds(self, text: str, what: str) -> int:
        """ptime/maxptime: some stacks write ``20.0``; the fraction is dropped."""
        match = _DECIMAL_RE.fullmatch(text)
        if match is None:
            raise self.fail(f"{what} {text[:20]!r} is not a number of milliseconds")
        value = int(match.group(1))
        if value < 1:
            raise self.fail(f"{what} must be at least 1 ms")
        return value

    # -- media sections

    def media_section(self, lines: list[tuple[int, str, str]]) -> MediaDescription:
        self.number, _, value = lines[0]
        parts = value.split()
        if len(parts) < 3:
            raise self.fail("m= needs at least: media port proto")
        media, port_text, proto, *formats = parts
        port_part, slash, count_part = port_text.partition("/")
        port = self.integer(port_part, f"m={media} port", 0, 65535, digits=5)
        port_count = self.integer(count_part, "m= port count", 1, 65535) if slash else None
        if len(formats) > MAX_FORMATS:
            raise self.fail(f"m={media} lists more than {MAX_FORMATS} formats")
        if not formats and port != 0:
            raise self.fail(f"m={media} lists no formats")
        if len(set(formats)) != len(formats):
            raise self.fail(f"m={media} lists a format twice")
        rtp = _is_rtp_proto(proto)
        if rtp:
            for fmt in formats:
                self.payload_type(fmt, f"m={media}")
        connection: Connection | None = None
        attributes = _AttributeSet(self, rtp=rtp)
        other: list[tuple[str, str]] = []
        for self.number, letter, value in lines[1:]:
            if letter == "c":
                if connection is not None:
                    raise self.fail(f"second c= line in m={media} section")
                connection = self.connection(value)
            elif letter == "a":
                attributes.add(value)
            elif letter in _MEDIA_ORDER:
                other.append((letter, value))
            elif letter in _SESSION_ONLY:
                raise self.fail(f"{letter}= line inside an m={media} section")
            else:
                raise self.fail(f"unknown line type {letter}=")
        order = _format_order(formats)

        def position(payload_type: int) -> int:
            return order.get(payload_type, len(order))

        return MediaDescription(
            media=media,
            port=port,
            proto=proto,
            formats=tuple(formats),
            port_count=port_count,
            connection=connection,
            rtpmaps=tuple(sorted(attributes.rtpmaps, key=lambda r: position(r.payload_type))),
            fmtps=tuple(sorted(attributes.fmtps, key=lambda f: position(f.payload_type))),
            ptime=attributes.ptime,
            maxptime=attributes.maxptime,
            direction=attributes.direction,
            rtcp=attributes.rtcp,
            attributes=tuple(attributes.generic),
            other_lines=_in_field_order(other, _MEDIA_ORDER),
        )

    def payload_type(self, text: str, what: str) -> int:
        if not _DIGITS_RE.fullmatch(text) or len(text) > 3:
            raise self.fail(f"{what}: payload type {text[:20]!r} is not an integer")
        number = int(text)
        if number > 127:
            raise self.fail(f"{what}: payload type {number} is out of range (0-127)")
        return number


class _AttributeSet:
    """Collects the ``a=`` lines of one level, typing the ones negotiation needs."""

    def __init__(self, parser: _Parser, *, rtp: bool = False) -> None:
        self.parser = parser
        self.rtp = rtp
        self.direction: Direction | None = None
        self.ptime: int | None = None
        self.maxptime: int | None = None
        self.rtcp: Rtcp | None = None
        self.rtpmaps: list[RtpMap] = []
        self.fmtps: list[Fmtp] = []
        self.generic: list[Attribute] = []

    def add(self, text: str) -> None:
        parser = self.parser
        name, colon, value = text.partition(":")
        if not name or any(ch.isspace() for ch in name):
            raise parser.fail(f"bad attribute name in a={text[:40]!r}")
        if not colon and name in _DIRECTIONS:
            direction = _DIRECTIONS[name]
            if self.direction is not None and self.direction != direction:
                raise parser.fail(f"conflicting direction attributes {self.direction} and {name}")
            self.direction = direction
        elif colon and self.rtp and name == "rtpmap":
            rtpmap = self.parse_rtpmap(value)
            if any(r.payload_type == rtpmap.payload_type for r in self.rtpmaps):
                raise parser.fail(f"second rtpmap for payload type {rtpmap.payload_type}")
            self.rtpmaps.append(rtpmap)
        elif colon and self.rtp and name == "fmtp":
            fmtp = self.parse_fmtp(value)
            if any(f.payload_type == fmtp.payload_type for f in self.fmtps):
                raise parser.fail(f"second fmtp for payload type {fmtp.payload_type}")
            self.fmtps.append(fmtp)
        elif colon and self.rtp and name == "ptime":
            if self.ptime is not None:
                raise parser.fail("second a=ptime")
            self.ptime = parser.milliseconds(value, "a=ptime")
        elif colon and self.rtp and name == "maxptime":
            if self.maxptime is not None:
                raise parser.fail("second a=maxptime")
            self.maxptime = parser.milliseconds(value, "a=maxptime")
        elif colon and self.rtp and name == "rtcp":
            if self.rtcp is not None:
                raise parser.fail("second a=rtcp")
            self.rtcp = self.parse_rtcp(value)
        else:
            self.generic.append(Attribute(name, value if colon else None))

    def parse_rtpmap(self, value: str) -> RtpMap:
        parser = self.parser
        parts = value.split()
        if len(parts) != 2:
            raise parser.fail(f"a=rtpmap needs '<pt> <encoding>/<rate>': {value[:40]!r}")
        payload_type = parser.payload_type(parts[0], "a=rtpmap")
        pieces = parts[1].split("/")
        if len(pieces) not in (2, 3) or not pieces[0]:
            raise parser.fail(f"a=rtpmap encoding must be '<name>/<rate>[/<n>]': {value[:40]!r}")
        clock_rate = parser.integer(pieces[1], "a=rtpmap clock rate", 1, None)
        channels = parser.integer(pieces[2], "a=rtpmap channels", 1, 255) if len(pieces) == 3 else 1
        return RtpMap(payload_type, pieces[0], clock_rate, channels)

    def parse_fmtp(self, value: str) -> Fmtp:
        parts = value.split(maxsplit=1)
        if not parts:
            raise self.parser.fail("a=fmtp has no payload type")
        payload_type = self.parser.payload_type(parts[0], "a=fmtp")
        return Fmtp(payload_type, parts[1] if len(parts) == 2 else "")

    def parse_rtcp(self, value: str) -> Rtcp:
        parser = self.parser
        parts = value.split()
        if len(parts) not in (1, 4):
            raise parser.fail(f"a=rtcp needs '<port> [IN IP4 <address>]': {value[:40]!r}")
        port = parser.integer(parts[0], "a=rtcp port", 0, 65535, digits=5)
        connection = parser.connection_fields(parts[1:], "a=rtcp") if len(parts) == 4 else None
        return Rtcp(port, connection)


def _valid_host(host: str, address_type: str) -> bool:
    """An IP literal of the stated family, or a plausible host name (RFC 8866 allows FQDNs)."""
    if address_type == "IP4" and _IPV4_LIKE_RE.fullmatch(host):
        try:
            ipaddress.IPv4Address(host)
        except ValueError:
            return False
        return True
    if address_type == "IP6" and ":" in host:
        try:
            ipaddress.IPv6Address(host)
        except ValueError:
            return False
        return True
    return _HOSTNAME_RE.fullmatch(host) is not None and not _IPV4_LIKE_RE.fullmatch(host)


# ---------------------------------------------------------------------- negotiation


@dataclass(frozen=True)
class Negotiated:
    """What the media layer needs once offer and answer agree.

    ``answer`` is the answer SDP: the one we built (UAS) or the one we received
    (UAC). ``can_send``/``can_receive`` are from our side; ``on_hold`` says the
    remote refused our media (``sendonly``/``inactive``/``c=0.0.0.0``) although
    we were willing to send, so the call logic can pause the model's speech.
    """

    answer: SessionDescription
    media_index: int
    codec: str
    payload_type: int
    clock_rate: int
    channels: int
    telephone_event_payload_type: int | None
    telephone_event_clock_rate: int | None
    remote_rtp: tuple[str, int]
    remote_ptime: int | None
    remote_fmtp: str | None
    can_send: bool
    can_receive: bool
    on_hold: bool

    @property
    def sample_rate(self) -> int:
        """Audio sample rate, which differs from the RTP clock for G722 (16 kHz vs 8000)."""
        return _CODECS[self.codec.casefold()].sample_rate

    @property
    def direction(self) -> Direction:
        """Our direction as an SDP attribute value."""
        if self.can_send:
            return "sendrecv" if self.can_receive else "sendonly"
        return "recvonly" if self.can_receive else "inactive"


def negotiate_answer(
    offer: SessionDescription,
    *,
    local_address: str,
    local_port: int,
    codec_preference: Sequence[str] = SUPPORTED_CODECS,
    session_id: int,
    session_version: int,
) -> Negotiated:
    """Answer an offer as the UAS (RFC 3264 §6).

    Takes the first audio m-line over RTP/AVP(F) that shares a codec with us and
    picks, among the codecs it offers, the first in *our* preference order: the
    model's audio quality is ours to choose. Payload-type numbers are echoed
    from the offer (RFC 3264 §6.1 SHOULD), since some peers send with the offered
    numbers whatever the answer says.
    Raises `NoCommonCodec` when no m-line qualifies.
    """
    preference = _codec_list(codec_preference, "codec_preference")
    _check_local(local_address, local_port, session_id, session_version)
    chosen: tuple[int, _Codec, int] | None = None
    for index, media in enumerate(offer.media):
        if media.media.lower() != "audio" or media.port == 0:
            continue
        if media.proto.upper() not in _NEGOTIABLE_PROTOS:
            continue
        for codec in preference:
            payload_type = _find_payload(media, codec)
            if payload_type is not None:
                chosen = (index, codec, payload_type)
                break
        if chosen is not None:
            break
    if chosen is None:
        raise NoCommonCodec(
            f"no common codec: offered {_describe_offer(offer)};"
            f" we support {', '.join(c.name for c in preference)} over RTP/AVP"
        )
    index, codec, payload_type = chosen
    offered = offer.media[index]
    event = _find_telephone_event(offered, codec.clock_rate)
    connection = _remote_connection(offer, offered)
    remote = offer.direction_for(offered)
    if connection.is_unspecified:
        remote = _without_receive(remote)  # RFC 3264 §8.4: send neither RTP nor RTCP there
    ours = _MIRROR[remote]

    rtpmaps = [RtpMap(payload_type, codec.name, codec.clock_rate, codec.channels)]
    fmtps = [Fmtp(payload_type, codec.offer_fmtp)] if codec.offer_fmtp else []
    formats = [str(payload_type)]
    if event is not None:
        formats.append(str(event.payload_type))
        rtpmaps.append(event)
        event_fmtp = offered.fmtp_for(event.payload_type)
        if event_fmtp is not None:
            fmtps.append(Fmtp(event.payload_type, event_fmtp))
    accepted = MediaDescription(
        media=offered.media,
        port=local_port,
        proto=offered.proto,
        formats=tuple(formats),
        rtpmaps=tuple(rtpmaps),
        fmtps=tuple(fmtps),
        ptime=_PTIME_MS,
        direction=ours,
    )
    sections = tuple(accepted if i == index else _rejected(m) for i, m in enumerate(offer.media))
    answer = _local_description(local_address, session_id, session_version, sections)
    return Negotiated(
        answer=answer,
        media_index=index,
        codec=codec.name,
        payload_type=payload_type,
        clock_rate=codec.clock_rate,
        channels=codec.channels,
        telephone_event_payload_type=event.payload_type if event else None,
        telephone_event_clock_rate=event.clock_rate if event else None,
        remote_rtp=(connection.host, offered.port),
        remote_ptime=offered.ptime,
        remote_fmtp=offered.fmtp_for(payload_type),
        can_send=_sends(ours),
        can_receive=_receives(ours),
        on_hold=not _receives(remote),
    )


def build_offer(
    *,
    local_address: str,
    local_port: int,
    codecs: Sequence[str],
    session_id: int,
    session_version: int,
    direction: Direction = "sendrecv",
    telephone_event: bool = True,
) -> SessionDescription:
    """An offer as the UAC: one audio stream, ``codecs`` in our order of preference.

    Static types keep their RFC 3551 numbers; Opus is 111 and telephone-event
    101 at 8000 Hz, the numbers most stacks use, which makes traces easy to read.
    """
    chosen = _codec_list(codecs, "codecs")
    _check_local(local_address, local_port, session_id, session_version)
    if direction not in _DIRECTIONS:
        raise ValueError(f"direction must be one of {', '.join(_DIRECTIONS)}, not {direction!r}")
    rtpmaps = [RtpMap(c.offer_payload_type, c.name, c.clock_rate, c.channels) for c in chosen]
    fmtps = [Fmtp(c.offer_payload_type, c.offer_fmtp) for c in chosen if c.offer_fmtp]
    if telephone_event:
        rtpmaps.append(RtpMap(_OFFER_TELEPHONE_EVENT_PT, _TELEPHONE_EVENT, 8000))
        fmtps.append(Fmtp(_OFFER_TELEPHONE_EVENT_PT, _OFFER_TELEPHONE_EVENT_FMTP))
    media = MediaDescription(
        media="audio",
        port=local_port,
        proto="RTP/AVP",
        formats=tuple(str(r.payload_type) for r in rtpmaps),
        rtpmaps=tuple(rtpmaps),
        fmtps=tuple(fmtps),
        ptime=_PTIME_MS,
        direction=direction,
    )
    return _local_description(local_address, session_id, session_version, (media,))


def accept_answer(offer: SessionDescription, answer: SessionDescription) -> Negotiated:
    """Check the answer to our offer (RFC 3264 §7) and say what was agreed.

    The answer may renumber payload types (§6.1 is only a SHOULD), so codecs are
    matched by name, rate and channels, and the answer's numbers are the ones
    to send with. Raises `SdpError` for an answer that does not fit the offer,
    `NoCommonCodec` when it refuses every audio stream we offered.
    """
    if len(answer.media) != len(offer.media):
        raise SdpError(f"answer has {len(answer.media)} m-lines for the offer's {len(offer.media)}")
    for position, (ours, theirs) in enumerate(zip(offer.media, answer.media, strict=True), 1):
        if ours.media != theirs.media:
            raise SdpError(
                f"answer m-line {position} is {theirs.media}, the offer's is {ours.media}"
            )
    for index, (ours, theirs) in enumerate(zip(offer.media, answer.media, strict=True)):
        if ours.media.lower() != "audio" or not ours.is_rtp or ours.port == 0 or theirs.port == 0:
            continue
        if theirs.proto.upper() != ours.proto.upper():
            raise SdpError(f"answer changes the transport from {ours.proto} to {theirs.proto}")
        return _agreed(offer, answer, index)
    raise NoCommonCodec("the answer refused every audio stream we offered")


def with_direction(
    description: SessionDescription, direction: Direction, version: int
) -> SessionDescription:
    """A re-offer of ``description`` with every active stream set to ``direction``.

    For hold (``sendonly``, RFC 3264 §8.4) and resume (``sendrecv``). The
    direction goes on each m-line and the session-level one is dropped, so no
    stale value can win; ``version`` must exceed the last one sent.
    """
    if direction not in _DIRECTIONS:
        raise ValueError(f"direction must be one of {', '.join(_DIRECTIONS)}, not {direction!r}")
    if version <= description.origin.session_version:
        raise ValueError(
            f"session version {version} does not exceed {description.origin.session_version}"
        )
    media = tuple(replace(m, direction=direction) if m.port != 0 else m for m in description.media)
    return replace(
        description,
        origin=replace(description.origin, session_version=version),
        direction=None,
        media=media,
    )


# -- negotiation internals


def _codec_list(names: Iterable[str], what: str) -> list[_Codec]:
    codecs: list[_Codec] = []
    for name in names:
        codec = _CODECS.get(name.casefold())
        if codec is None:
            raise ValueError(
                f"{what}: unsupported codec {name!r} (supported: {', '.join(SUPPORTED_CODECS)})"
            )
        if codec in codecs:
            raise ValueError(f"{what}: codec {name!r} listed twice")
        codecs.append(codec)
    if not codecs:
        raise ValueError(f"{what} is empty")
    return codecs


def _check_local(address: str, port: int, session_id: int, session_version: int) -> None:
    if not address or any(ch.isspace() for ch in address):
        raise ValueError(f"local_address {address!r} is not an address")
    if not 1 <= port <= 65535:
        raise ValueError(f"local_port {port} is out of range (1-65535)")
    if session_id < 0 or session_version < 0:
        raise ValueError("session_id and session_version must not be negative")


def _local_description(
    address: str, session_id: int, session_version: int, media: tuple[MediaDescription, ...]
) -> SessionDescription:
    address_type = "IP6" if ":" in address else "IP4"
    return SessionDescription(
        origin=Origin("-", session_id, session_version, address, address_type),
        media=media,
        session_name="-",
        connection=Connection(address, address_type),
    )


def _find_payload(media: MediaDescription, codec: _Codec) -> int | None:
    for payload_type in media.payload_types:
        rtpmap = media.rtpmap_for(payload_type)
        if rtpmap is not None and rtpmap.matches(codec.name, codec.clock_rate, codec.channels):
            return payload_type
    return None


def _find_telephone_event(media: MediaDescription, clock_rate: int) -> RtpMap | None:
    """RFC 4733 §2.1: events share the audio clock; 8000 is the fallback every stack knows."""
    events = [
        rtpmap
        for pt in media.payload_types
        if (rtpmap := media.rtpmap_for(pt)) is not None
        and rtpmap.encoding.casefold() == _TELEPHONE_EVENT
    ]
    for rate in dict.fromkeys((clock_rate, 8000)):
        for event in events:
            if event.clock_rate == rate:
                return RtpMap(event.payload_type, event.encoding, event.clock_rate)
    return None


def _remote_connection(description: SessionDescription, media: MediaDescription) -> Connection:
    """`parse_sdp` guarantees a ``c=`` for active streams; a hand-built description may not."""
    connection = description.connection_for(media)
    if connection is None:
        raise SdpError(f"m={media.media} has no c= line at media or session level")
    return connection


def _rejected(media: MediaDescription) -> MediaDescription:
    """RFC 3264 §6: a refused stream keeps its slot, media and formats, with port 0."""
    return MediaDescription(media=media.media, port=0, proto=media.proto, formats=media.formats)


def _describe_offer(offer: SessionDescription) -> str:
    parts: list[str] = []
    for media in offer.media:
        if media.port == 0:
            continue
        names = []
        for payload_type in media.payload_types:
            rtpmap = media.rtpmap_for(payload_type)
            names.append(_rtpmap_value(rtpmap) if rtpmap else str(payload_type))
        listed = " ".join(names) if names else " ".join(media.formats)
        parts.append(f"{media.media} {media.proto} ({listed})"[:200])
    return "; ".join(parts) if parts else "no active stream"


def _sends(direction: Direction) -> bool:
    return direction in ("sendrecv", "sendonly")


def _receives(direction: Direction) -> bool:
    return direction in ("sendrecv", "recvonly")


def _without_receive(direction: Direction) -> Direction:
    if direction == "sendrecv":
        return "sendonly"
    if direction == "recvonly":
        return "inactive"
    return direction


def _agreed(offer: SessionDescription, answer: SessionDescription, index: int) -> Negotiated:
    ours = offer.media[index]
    theirs = answer.media[index]
    offered: list[_Codec] = [
        codec for codec in _CODECS.values() if _find_payload(ours, codec) is not None
    ]
    picked: tuple[_Codec, int] | None = None
    for payload_type in theirs.payload_types:
        rtpmap = theirs.rtpmap_for(payload_type)
        if rtpmap is None or rtpmap.encoding.casefold() == _TELEPHONE_EVENT:
            continue
        for codec in offered:
            if rtpmap.matches(codec.name, codec.clock_rate, codec.channels):
                picked = (codec, payload_type)
                break
        if picked is not None:
            break
    if picked is None:
        raise SdpError(
            f"answer m-line {index + 1} picks no codec we offered: {' '.join(theirs.formats)[:100]}"
        )
    codec, payload_type = picked
    offered_events = _find_telephone_event(ours, codec.clock_rate) is not None
    event = _find_telephone_event(theirs, codec.clock_rate) if offered_events else None
    connection = _remote_connection(answer, theirs)
    remote = answer.direction_for(theirs)
    if connection.is_unspecified:
        remote = _without_receive(remote)
    local = offer.direction_for(ours)
    can_send = _sends(local) and _receives(remote)
    return Negotiated(
        answer=answer,
        media_index=index,
        codec=codec.name,
        payload_type=payload_type,
        clock_rate=codec.clock_rate,
        channels=codec.channels,
        telephone_event_payload_type=event.payload_type if event else None,
        telephone_event_clock_rate=event.clock_rate if event else None,
        remote_rtp=(connection.host, theirs.port),
        remote_ptime=theirs.ptime,
        remote_fmtp=theirs.fmtp_for(payload_type),
        can_send=can_send,
        can_receive=_receives(local) and _sends(remote),
        on_hold=_sends(local) and not can_send,
    )
