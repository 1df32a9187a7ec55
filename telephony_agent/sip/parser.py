"""Bytes to SIP messages: one datagram, or a TCP stream cut at Content-Length.

Why every header is checked here and not where it is used: a SIP server faces
scanners, broken gateways and hostile input, and a value that is only parsed
deep in a dialog or a call raises there, far from anything that can answer the
peer. So the parser checks every header the stack later relies on — Via (every
entry), From, To, Call-ID, CSeq, Contact, Route, Record-Route, and each numeric
header with a bound on its digits and its range — and raises `SipParseError`
and nothing else, whatever the input. An error keeps enough of a bad request
(Via, From, To, Call-ID, CSeq) to answer it with ``400 Bad Request (reason)``
instead of silently timing the peer out; anything less is dropped and counted.
"""

from __future__ import annotations

import re
from collections.abc import Callable

from telephony_agent.sip.message import (
    MAX_FORWARDS_LIMIT,
    MAX_HEADER_LINES,
    MAX_LINE_BYTES,
    MAX_MESSAGE_BYTES,
    Headers,
    NameAddr,
    SipMessage,
    SipParseError,
    SipRequest,
    SipResponse,
    SipUri,
    Via,
    parse_cseq,
    parse_number,
)

__all__ = ["MAX_LIST_ENTRIES", "StreamFramer", "parse_message"]

#: More Via, Route, Record-Route or Contact entries than this is no real message:
#: Max-Forwards (70 by default) bounds the proxies a request can pass.
MAX_LIST_ENTRIES = 70

#: Headers a request must carry before we can answer it at all (RFC 3261 §8.1.1).
_REQUIRED_FOR_REPLY = ("Via", "From", "To", "Call-ID", "CSeq")

_TOKEN_RE = re.compile(r"^[A-Za-z0-9\-.!%*_+`'~]+$")
_REQUEST_LINE_RE = re.compile(r"^([A-Za-z0-9\-.!%*_+`'~]+) (\S+) [Ss][Ii][Pp]/2\.0$")
# §7.1: the version string is case-insensitive; a status code is exactly three digits.
_STATUS_LINE_RE = re.compile(r"^[Ss][Ii][Pp]/2\.0 ([1-6][0-9][0-9])(?: (.*))?$")
# RFC 3261 §20.38 and §8.2.6.1: "1*DIGIT [ . *DIGIT ]", optionally followed by a delay.
_TIMESTAMP_RE = re.compile(r"[0-9]{1,20}(?:\.[0-9]{0,20})?(?:\s+[0-9]{1,20}(?:\.[0-9]{0,20})?)?")
_DELAY_END_RE = re.compile(r"[\s(;]")
# RFC 3261 §25: header values are text and white space; a lone CR, a NUL or any other
# control character is no part of one (and echoed into a response, it would break it).
_CONTROL_RE = re.compile(r"[\x00-\x08\x0a-\x1f\x7f]")
# RFC 3261 §25.1 callid = word [ "@" word ]: no white space, no separators that break it.
_CALL_ID_RE = re.compile(r"[^\s<>\"]{1,1024}")

_UINT31 = 2**31 - 1


def _number(name: str, digits: int, maximum: int | None) -> Callable[[str], None]:
    """A check for a header that is a number and nothing else (Max-Forwards: 70)."""

    def check(value: str) -> None:
        parse_number(value, name, digits=digits, maximum=maximum)

    return check


def _leading_number(name: str, digits: int, maximum: int | None) -> Callable[[str], None]:
    """A check for a header that starts with a delta-seconds, then parameters or a
    comment (Session-Expires: 1800;refresher=uac)."""

    def check(value: str) -> None:
        number = _DELAY_END_RE.split(value.strip(), maxsplit=1)[0]
        parse_number(number, name, digits=digits, maximum=maximum)

    return check


def _check_timestamp(value: str) -> None:
    if not _TIMESTAMP_RE.fullmatch(value.strip()):
        raise SipParseError(f"bad Timestamp {value[:20]!r}")


def _check_rack(value: str) -> None:
    """RFC 3262 §7.2: response-num CSeq-num Method."""
    parts = value.split()
    if len(parts) != 3:
        raise SipParseError(f"bad RAck {value[:30]!r}")
    parse_number(parts[0], "RAck", maximum=_UINT31)
    parse_cseq(f"{parts[1]} {parts[2]}")


#: Every numeric header (RFC 3261 §20, RFC 3262, RFC 4028) and its check. Delta-seconds
#: values take at most 10 digits (§20.19 caps their meaning at 2**32 - 1 anyway).
_NUMERIC_CHECKS: dict[str, Callable[[str], None]] = {
    "Max-Forwards": _number("Max-Forwards", 3, MAX_FORWARDS_LIMIT),
    "Expires": _number("Expires", 10, None),
    "Min-Expires": _number("Min-Expires", 10, None),
    "Session-Expires": _leading_number("Session-Expires", 10, None),
    "Min-SE": _leading_number("Min-SE", 10, None),
    "Retry-After": _leading_number("Retry-After", 10, None),
    "RSeq": _number("RSeq", 10, _UINT31),
    "RAck": _check_rack,
    "Timestamp": _check_timestamp,
}

#: Address lists the stack routes on; "*" is a Contact only in REGISTER (§10.2.2).
_ADDRESS_LISTS = ("Contact", "Route", "Record-Route")


def parse_message(data: bytes) -> SipMessage:
    """Parse one complete message (a UDP datagram or a framed TCP message).

    Raises `SipParseError` and nothing else, whatever the input.
    """
    if len(data) > MAX_MESSAGE_BYTES:
        raise SipParseError("message too large", status=513)
    # RFC 3261 §7.5: CRLFs before the start line are ignored. They must go before the
    # header/body split, or "\r\n\r\nINVITE ..." would look like an empty header block.
    data = data.lstrip(b"\r\n")
    head, separator, body = data.partition(b"\r\n\r\n")
    if not separator:
        head, separator, body = data.partition(b"\n\n")
        if not separator:
            # A datagram may legitimately end right after the headers' last CRLF.
            head = data.rstrip(b"\r\n")
            body = b""
    try:
        text = head.decode("utf-8")
    except UnicodeDecodeError:
        raise SipParseError("headers are not valid UTF-8") from None
    lines = _unfold(text.split("\n"))
    while lines and not lines[0].strip():
        lines.pop(0)  # RFC 3261 §7.5: ignore leading CRLFs
    if not lines:
        raise SipParseError("empty message")
    if len(lines) > MAX_HEADER_LINES + 1:
        raise SipParseError("too many header lines")
    start = lines[0].strip()
    headers = _parse_headers(lines[1:])
    request_match = _REQUEST_LINE_RE.match(start)
    message: SipMessage
    if request_match is not None:
        message = SipRequest(request_match.group(1).upper(), request_match.group(2), headers)
    else:
        status_match = _STATUS_LINE_RE.match(start)
        if status_match is None:
            raise SipParseError(f"bad start line {start[:60]!r}")
        message = SipResponse(int(status_match.group(1)), status_match.group(2) or "", headers)
    message.body = _frame_body(message, body)
    _validate(message)
    return message


def _unfold(raw_lines: list[str]) -> list[str]:
    lines: list[str] = []
    for raw in raw_lines:
        line = raw[:-1] if raw.endswith("\r") else raw
        if len(line) > MAX_LINE_BYTES:
            raise SipParseError("header line too long")
        if line[:1] in (" ", "\t") and lines:
            lines[-1] = lines[-1] + " " + line.strip()
            if len(lines[-1]) > MAX_LINE_BYTES:
                raise SipParseError("header line too long")
        else:
            lines.append(line)
    return lines


def _parse_headers(lines: list[str]) -> Headers:
    fields: list[tuple[str, str]] = []
    for line in lines:
        if not line.strip():
            continue
        name, colon, value = line.partition(":")
        name = name.strip()
        if not colon or not name or not _TOKEN_RE.match(name):
            raise SipParseError(f"malformed header line {line[:40]!r}")
        fields.append((name, value.strip()))
    return Headers(fields)


def _frame_body(message: SipMessage, body: bytes) -> bytes:
    declared = message.headers.get_all("Content-Length")
    if not declared:
        return body
    if len({value.strip() for value in declared}) > 1:
        # Two lengths: a stream could be cut at either, so neither can be trusted.
        raise _error_for(message, "conflicting Content-Length headers")
    try:
        length = parse_number(declared[0], "Content-Length")
    except SipParseError as exc:
        raise _error_for(message, exc.reason) from None
    if length > len(body):
        raise _error_for(message, "body shorter than Content-Length")
    return body[:length]  # RFC 3261 §18.3: extra bytes after the body are discarded


def _validate(message: SipMessage) -> None:
    headers = message.headers
    for name in _REQUIRED_FOR_REPLY:
        if headers.get(name) is None:
            raise SipParseError(f"missing {name} header")
    vias = headers.get_all("Via")
    try:
        Via.parse(vias[0])
    except (SipParseError, IndexError):
        raise SipParseError("malformed Via header") from None
    try:
        for name, value in headers:
            if _CONTROL_RE.search(value):
                raise SipParseError(f"control character in {name}")
        _, method = parse_cseq(headers.get("CSeq") or "")
        for name in ("From", "To"):
            _checked(name, lambda value: NameAddr.parse(value), headers.get(name) or "")
        _check_call_id(headers)
        _check_list("Via", vias, Via.parse)
        if isinstance(message, SipRequest):
            if method != message.method:
                raise SipParseError("CSeq method does not match the request")
            _checked("Request-URI", SipUri.parse, message.uri)
        for name in _ADDRESS_LISTS:
            _check_list(name, headers.get_all(name), _address_check(message, name))
        for name, check in _NUMERIC_CHECKS.items():
            for value in headers.get_all(name):
                check(value)
    except SipParseError as exc:
        raise _error_for(message, exc.reason) from None


def _checked(name: str, parse: Callable[[str], object], value: str) -> None:
    try:
        parse(value)
    except SipParseError as exc:
        raise SipParseError(f"malformed {name}: {exc.reason}") from None


def _check_call_id(headers: Headers) -> None:
    values = headers.get_all("Call-ID")
    if len(values) > 1:
        raise SipParseError("more than one Call-ID")
    if not _CALL_ID_RE.fullmatch(values[0]):
        raise SipParseError("malformed Call-ID")


def _check_list(name: str, values: list[str], parse: Callable[[str], object]) -> None:
    if len(values) > MAX_LIST_ENTRIES:
        raise SipParseError(f"more than {MAX_LIST_ENTRIES} {name} entries")
    for value in values:
        _checked(name, parse, value)


def _address_check(message: SipMessage, name: str) -> Callable[[str], object]:
    """How one Contact/Route/Record-Route entry must look.

    These URIs become where in-dialog requests go, so they must be SIP URIs with a
    host; "*" is a Contact only in a REGISTER, the one method that means "all".
    """
    star_allowed = (
        name == "Contact" and isinstance(message, SipRequest) and message.method == "REGISTER"
    )

    def check(value: str) -> object:
        address = NameAddr.parse(value)
        if address.uri == "*":
            if not star_allowed:
                raise SipParseError("'*' is no address here")
            return address
        uri = SipUri.parse(address.uri)
        if uri.scheme not in ("sip", "sips") and not star_allowed:
            raise SipParseError(f"not a SIP URI: {address.uri[:40]!r}")
        return address

    return check


def _error_for(message: SipMessage, reason: str) -> SipParseError:
    """An error that still lets a server answer the request it came from.

    Only a request whose Via, From, To, Call-ID and CSeq are all present (and whose
    top Via parses, so the response can be routed) is answerable; anything less is
    dropped, since a 400 without them could not be matched or even sent.
    """
    partial = message if isinstance(message, SipRequest) and _answerable(message) else None
    return SipParseError(reason, partial=partial)


def _answerable(request: SipRequest) -> bool:
    """Whether a 400 can be built from the request: it copies these headers back."""
    for name in _REQUIRED_FOR_REPLY:
        values = request.headers.get_all(name)
        if not values or any(_CONTROL_RE.search(value) for value in values):
            return False
    try:
        Via.parse(request.headers.get_all("Via")[0])
    except (SipParseError, IndexError):
        return False
    return True


# ---------------------------------------------------------------------- TCP framing


class StreamFramer:
    """Cut a TCP byte stream into messages using Content-Length (RFC 3261 §18.3).

    `feed` returns complete messages and parse errors in arrival order. A stream
    that is unrecoverable (a message without a usable Content-Length, or a
    header block beyond the size limit) sets `broken`; the shell closes the
    connection because there is no way to find the next message boundary.
    """

    def __init__(self) -> None:
        self._buffer = bytearray()
        self.broken = False

    def feed(self, data: bytes) -> list[SipMessage | SipParseError]:
        if self.broken:
            return []
        self._buffer.extend(data)
        out: list[SipMessage | SipParseError] = []
        while True:
            # Keep-alive CRLFs between messages (RFC 5626 §3.5.1) are skipped.
            while self._buffer[:2] == b"\r\n":
                del self._buffer[:2]
            end = self._buffer.find(b"\r\n\r\n")
            if end < 0:
                if len(self._buffer) > MAX_MESSAGE_BYTES:
                    self.broken = True
                    out.append(SipParseError("header block too large"))
                return out
            head = bytes(self._buffer[:end])
            length = _content_length(head)
            if length is None:
                self.broken = True
                out.append(SipParseError("missing or bad Content-Length on a stream"))
                return out
            total = end + 4 + length
            if total > MAX_MESSAGE_BYTES:
                self.broken = True
                out.append(SipParseError("message too large", status=513))
                return out
            if len(self._buffer) < total:
                return out
            chunk = bytes(self._buffer[:total])
            del self._buffer[:total]
            try:
                out.append(parse_message(chunk))
            except SipParseError as exc:
                out.append(exc)


def _content_length(head: bytes) -> int | None:
    for raw in head.split(b"\r\n")[1:]:
        name, colon, value = raw.partition(b":")
        if colon and name.strip().lower() in (b"content-length", b"l"):
            text = value.strip()
            if not text.isdigit() or len(text) > 10:  # int() raises past 4300 digits
                return None
            return int(text)
    return None
