"""SIP messages as typed values: requests, responses, headers, URIs, addresses, Via.

Why hand-written: a SIP server faces scanners, broken gateways and hostile input.
The value parsers here (URI, name-addr, Via, CSeq) raise `SipParseError` and
nothing else, and bound what they read; `parser.py` turns bytes into these
values and checks every header the stack later relies on.
Header names are case-insensitive and have compact forms (RFC 3261 §7.3.3); they
are stored under one canonical spelling so the rest of the stack never has to care.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field

__all__ = [
    "MAX_FORWARDS_LIMIT",
    "MAX_HEADER_LINES",
    "MAX_LINE_BYTES",
    "MAX_MESSAGE_BYTES",
    "Headers",
    "NameAddr",
    "SipMessage",
    "SipParseError",
    "SipRequest",
    "SipResponse",
    "SipUri",
    "Via",
    "canonical_name",
    "is_digits",
    "parse_cseq",
    "parse_number",
    "split_header_values",
]

#: Largest message accepted (UDP datagrams cannot be larger; TCP gets the same bound).
MAX_MESSAGE_BYTES = 65_535
MAX_HEADER_LINES = 256
MAX_LINE_BYTES = 8_192
#: RFC 3261 §8.1.1.6: Max-Forwards is an integer from 0 to 255.
MAX_FORWARDS_LIMIT = 255

_COMPACT = {
    "i": "Call-ID",
    "m": "Contact",
    "e": "Content-Encoding",
    "l": "Content-Length",
    "c": "Content-Type",
    "f": "From",
    "s": "Subject",
    "k": "Supported",
    "t": "To",
    "v": "Via",
    "o": "Event",
    "r": "Refer-To",
    "b": "Referred-By",
    "x": "Session-Expires",
    "u": "Allow-Events",
    "a": "Accept-Contact",
    "j": "Reject-Contact",
    "d": "Request-Disposition",
    "y": "Identity",
}

_CANONICAL = {
    name.lower(): name
    for name in (
        "Accept",
        "Accept-Encoding",
        "Accept-Language",
        "Alert-Info",
        "Allow",
        "Allow-Events",
        "Authorization",
        "Call-ID",
        "Call-Info",
        "Contact",
        "Content-Disposition",
        "Content-Encoding",
        "Content-Language",
        "Content-Length",
        "Content-Type",
        "CSeq",
        "Date",
        "Error-Info",
        "Event",
        "Expires",
        "From",
        "Max-Forwards",
        "Min-Expires",
        "Min-SE",
        "Organization",
        "P-Asserted-Identity",
        "Priority",
        "Proxy-Authenticate",
        "Proxy-Authorization",
        "Proxy-Require",
        "Reason",
        "Record-Route",
        "Refer-To",
        "Referred-By",
        "Reply-To",
        "Require",
        "Retry-After",
        "Route",
        "RSeq",
        "RAck",
        "Server",
        "Session-Expires",
        "Subject",
        "Subscription-State",
        "Supported",
        "Timestamp",
        "To",
        "Unsupported",
        "User-Agent",
        "Via",
        "Warning",
        "WWW-Authenticate",
    )
}

#: Headers whose comma-separated values are separate entries (RFC 3261 §7.3.1).
#: Authorization-style headers and Date are deliberately absent: commas are part of them.
_MULTI_VALUED = frozenset(
    {
        "Accept",
        "Accept-Encoding",
        "Accept-Language",
        "Allow",
        "Allow-Events",
        "Contact",
        "Proxy-Require",
        "Record-Route",
        "Require",
        "Route",
        "Supported",
        "Unsupported",
        "Via",
    }
)

_TOKEN_RE = re.compile(r"^[A-Za-z0-9\-.!%*_+`'~]+$")
# sent-protocol allows LWS around each slash (RFC 3261 §25.1 SLASH, RFC 4475 §3.1.1.1).
_URI_CHARS_RE = re.compile(r"[!#-;=?-\[\]_a-z~]+")
_HOST_RE = re.compile(r"[A-Za-z0-9_](?:[A-Za-z0-9_.\-]{0,253}[A-Za-z0-9_.])?")
_VIA_RE = re.compile(r"^([^\s/]+)\s*/\s*([^\s/]+)\s*/\s*([^\s/;]+)\s+(.*)$", re.DOTALL)


class SipParseError(ValueError):
    """Input that is not a SIP message we can process.

    ``status`` is the response a server should send if the message was a request
    with enough headers to reply to (``partial`` is then set); otherwise the
    datagram is dropped and counted.
    """

    def __init__(
        self, reason: str, *, status: int = 400, partial: SipRequest | None = None
    ) -> None:
        super().__init__(reason)
        self.reason = reason
        self.status = status
        self.partial = partial


def canonical_name(name: str) -> str:
    """Return the one spelling we store a header under ("v" and "VIA" become "Via")."""
    lowered = name.lower()
    if len(lowered) == 1 and lowered in _COMPACT:
        return _COMPACT[lowered]
    known = _CANONICAL.get(lowered)
    if known is not None:
        return known
    return "-".join(part.capitalize() for part in lowered.split("-"))


def split_header_values(value: str) -> list[str]:
    """Split a header value at top-level commas (not inside quotes or <...>)."""
    parts: list[str] = []
    depth_angle = 0
    in_quotes = False
    escaped = False
    start = 0
    for index, char in enumerate(value):
        if in_quotes:
            if escaped:
                escaped = False
            elif char == "\\":
                escaped = True
            elif char == '"':
                in_quotes = False
            continue
        if char == '"':
            in_quotes = True
        elif char == "<":
            depth_angle += 1
        elif char == ">":
            depth_angle = max(0, depth_angle - 1)
        elif char == "," and depth_angle == 0:
            parts.append(value[start:index].strip())
            start = index + 1
    parts.append(value[start:].strip())
    return [part for part in parts if part]


class Headers:
    """Ordered, case-insensitive multi-map of header fields.

    Order matters in SIP (Via and Route are stacks), so fields are a list of
    ``(canonical name, value)`` pairs rather than a dict.
    """

    __slots__ = ("_fields",)

    def __init__(self, fields: Iterable[tuple[str, str]] = ()) -> None:
        self._fields: list[tuple[str, str]] = [(canonical_name(n), v) for n, v in fields]

    def __iter__(self) -> Iterator[tuple[str, str]]:
        return iter(self._fields)

    def __len__(self) -> int:
        return len(self._fields)

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and self.get(name) is not None

    def copy(self) -> Headers:
        clone = Headers()
        clone._fields = list(self._fields)
        return clone

    def get(self, name: str, default: str | None = None) -> str | None:
        """The first field value of `name`, unsplit."""
        wanted = canonical_name(name)
        for field_name, value in self._fields:
            if field_name == wanted:
                return value
        return default

    def get_all(self, name: str) -> list[str]:
        """Every value of `name`, comma-separated lists split for multi-valued headers."""
        wanted = canonical_name(name)
        values: list[str] = []
        for field_name, value in self._fields:
            if field_name != wanted:
                continue
            if wanted in _MULTI_VALUED:
                values.extend(split_header_values(value))
            else:
                values.append(value)
        return values

    def add(self, name: str, value: str) -> None:
        self._fields.append((canonical_name(name), value))

    def add_first(self, name: str, value: str) -> None:
        """Insert before every other field (a proxy-style Via push)."""
        self._fields.insert(0, (canonical_name(name), value))

    def set(self, name: str, value: str) -> None:
        """Replace every field of `name` with one value, at the first one's position."""
        wanted = canonical_name(name)
        for index, (field_name, _) in enumerate(self._fields):
            if field_name == wanted:
                self._fields[index] = (wanted, value)
                self._fields = [
                    f for i, f in enumerate(self._fields) if i <= index or f[0] != wanted
                ]
                return
        self._fields.append((wanted, value))

    def remove(self, name: str) -> None:
        wanted = canonical_name(name)
        self._fields = [f for f in self._fields if f[0] != wanted]


class _DialogFields:
    """What requests and responses both answer from their headers (one place for both)."""

    headers: Headers

    @property
    def call_id(self) -> str:
        return self.headers.get("Call-ID") or ""

    @property
    def cseq(self) -> tuple[int, str]:
        return parse_cseq(self.headers.get("CSeq") or "")

    @property
    def top_via(self) -> Via:
        return Via.parse(self.headers.get_all("Via")[0])

    @property
    def max_forwards(self) -> int | None:
        """Max-Forwards as a number (None when absent); the parser checked its range."""
        value = self.headers.get("Max-Forwards")
        if value is None:
            return None
        return parse_number(value, "Max-Forwards", digits=3, maximum=MAX_FORWARDS_LIMIT)


@dataclass
class SipRequest(_DialogFields):
    method: str
    uri: str
    headers: Headers = field(default_factory=Headers)
    body: bytes = b""

    def to_bytes(self) -> bytes:
        return _serialize(f"{self.method} {self.uri} SIP/2.0", self.headers, self.body)


@dataclass
class SipResponse(_DialogFields):
    status: int
    reason: str
    headers: Headers = field(default_factory=Headers)
    body: bytes = b""

    def to_bytes(self) -> bytes:
        return _serialize(f"SIP/2.0 {self.status} {self.reason}", self.headers, self.body)


SipMessage = SipRequest | SipResponse


def _serialize(start_line: str, headers: Headers, body: bytes) -> bytes:
    lines = [start_line]
    lines.extend(f"{name}: {value}" for name, value in headers if name != "Content-Length")
    lines.append(f"Content-Length: {len(body)}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode("utf-8") + body


def is_digits(text: str) -> bool:
    """ASCII digits only: str.isdigit() also accepts "²" and "٣", which int() then rejects."""
    return text.isascii() and text.isdigit()


def parse_number(text: str, what: str, *, digits: int = 10, maximum: int | None = None) -> int:
    """A non-negative decimal of at most `digits` ASCII digits, at most `maximum`.

    Why not int(): it accepts "+5", " 5", "1_0" and "٣", and raises past 4,300 digits
    (Python's conversion limit) with an error nothing up the stack expects.
    """
    text = text.strip()
    if not is_digits(text) or len(text) > digits:
        raise SipParseError(f"bad {what} {text[:20]!r}")
    number = int(text)
    if maximum is not None and number > maximum:
        raise SipParseError(f"{what} {number} out of range (0-{maximum})")
    return number


def parse_cseq(value: str) -> tuple[int, str]:
    parts = value.split()
    if len(parts) != 2 or not is_digits(parts[0]) or len(parts[0]) > 10:
        raise SipParseError(f"bad CSeq {value[:30]!r}")
    number = int(parts[0])
    if number >= 2**31:
        raise SipParseError("CSeq number out of range")
    if not _TOKEN_RE.match(parts[1]):
        raise SipParseError("bad CSeq method")
    return number, parts[1].upper()


# ---------------------------------------------------------------------- structured values


def _parse_params(text: str) -> dict[str, str | None]:
    params: dict[str, str | None] = {}
    for piece in _split_outside_quotes(text, ";"):
        piece = piece.strip()
        if not piece:
            continue
        name, equals, value = piece.partition("=")
        params[name.strip().lower()] = value.strip() if equals else None
    return params


def _format_params(params: dict[str, str | None]) -> str:
    return "".join(f";{k}" if v is None else f";{k}={v}" for k, v in params.items())


def _split_outside_quotes(text: str, separator: str) -> list[str]:
    parts: list[str] = []
    in_quotes = False
    start = 0
    for index, char in enumerate(text):
        if char == '"':
            in_quotes = not in_quotes
        elif char == separator and not in_quotes:
            parts.append(text[start:index])
            start = index + 1
    parts.append(text[start:])
    return parts


@dataclass(frozen=True)
class SipUri:
    """``sip:user@host:port;params`` — the parts the stack routes on."""

    scheme: str
    host: str
    user: str | None = None
    port: int | None = None
    params: dict[str, str | None] = field(default_factory=dict)

    @classmethod
    def parse(cls, text: str) -> SipUri:
        text = text.strip()
        if not _URI_CHARS_RE.fullmatch(text):
            # RFC 3261 §25.1: anything else must be %-escaped. A space, a control
            # character or a quote in a Contact would end up inside our BYE's
            # request line and make it unparsable at the far end.
            raise SipParseError(f"bad characters in URI {text[:40]!r}")
        scheme, colon, rest = text.partition(":")
        scheme = scheme.lower()
        if not colon or scheme not in ("sip", "sips", "tel"):
            raise SipParseError(f"unsupported URI {text[:40]!r}")
        if scheme == "tel":
            number, _, params = rest.partition(";")
            if not number:
                raise SipParseError("empty tel URI")
            return cls(scheme, "", number, None, _parse_params(params))
        # The user part may itself contain ';' and '?' ("sip:+1555;npdi@gw"), while '@'
        # appears nowhere but after userinfo, so split there before looking for params.
        user: str | None = None
        userinfo, at, hostpart = rest.partition("@")
        if at:
            user = userinfo.partition(":")[0]
        else:
            hostpart = rest
        hostpart, _, _headers = hostpart.partition("?")
        hostport, _, params = hostpart.partition(";")
        host, port = _split_hostport(hostport)
        return cls(scheme, host, user, port, _parse_params(params))

    def __str__(self) -> str:
        if self.scheme == "tel":
            return f"tel:{self.user}{_format_params(self.params)}"
        userinfo = f"{self.user}@" if self.user else ""
        host = f"[{self.host}]" if ":" in self.host else self.host
        port = f":{self.port}" if self.port is not None else ""
        return f"{self.scheme}:{userinfo}{host}{port}{_format_params(self.params)}"


def _is_ipv6(text: str) -> bool:
    try:
        ipaddress.IPv6Address(text)
    except ValueError:
        return False
    return True


def _closing_quote(text: str) -> int:
    """Index of the quote closing the quoted-string that starts `text` (-1: none)."""
    escaped = False
    for index in range(1, len(text)):
        char = text[index]
        if escaped:
            escaped = False
        elif char == "\\":
            escaped = True
        elif char == '"':
            return index
    return -1


def _split_hostport(text: str) -> tuple[str, int | None]:
    text = text.strip()
    if text.startswith("["):
        host, bracket, rest = text[1:].partition("]")
        if not bracket or not host or not _is_ipv6(host):
            raise SipParseError("bad IPv6 reference")
        port_text = rest[1:] if rest.startswith(":") else ""
        if rest and not rest.startswith(":"):
            raise SipParseError("bad host:port")
    else:
        host, _, port_text = text.partition(":")
        # RFC 3261 §25.1 hostname or IPv4address ('_' tolerated): anything else would
        # reach a socket call as a host name and fail there, far from the input.
        if not _HOST_RE.fullmatch(host):
            raise SipParseError(f"bad host {host[:40]!r}")
    if not port_text:
        return host.lower(), None
    if not is_digits(port_text) or len(port_text) > 5 or not 0 < int(port_text) < 65536:
        raise SipParseError(f"bad port {port_text[:10]!r}")
    return host.lower(), int(port_text)


@dataclass(frozen=True)
class NameAddr:
    """From/To/Contact/Route value: optional display name, URI, header parameters."""

    uri: str
    display: str | None = None
    params: dict[str, str | None] = field(default_factory=dict)

    @classmethod
    def parse(cls, text: str) -> NameAddr:
        text = text.strip()
        if not text:
            raise SipParseError("empty address")
        if text == "*":
            return cls("*")
        display: str | None = None
        if text.startswith('"'):
            # A quoted display name may contain '<', '>', ',' and ';' ("Doe, J <x>").
            end = _closing_quote(text)
            if end < 0:
                raise SipParseError("unterminated quoted display name")
            display = text[1:end]
            text = text[end + 1 :].lstrip()
            if not text.startswith("<"):
                raise SipParseError("quoted display name without <uri>")
        if "<" in text:
            before, _, after = text.partition("<")
            uri, closing, params = after.partition(">")
            if not closing:
                raise SipParseError("unterminated <uri>")
            before = before.strip()
            if before:
                # Stored as quoted-string content, like a quoted display name, so that
                # writing it back in quotes cannot end the quotes early.
                display = before.replace("\\", "\\\\").replace('"', '\\"')
        else:
            # addr-spec form: header parameters follow the first ';'.
            uri, _, params = text.partition(";")
        SipUri.parse(uri)
        return cls(uri.strip(), display, _parse_params(params))

    @property
    def tag(self) -> str | None:
        return self.params.get("tag")

    def with_tag(self, tag: str) -> NameAddr:
        return NameAddr(self.uri, self.display, {**self.params, "tag": tag})

    def __str__(self) -> str:
        display = f'"{self.display}" ' if self.display else ""
        return f"{display}<{self.uri}>{_format_params(self.params)}"


@dataclass(frozen=True)
class Via:
    """One Via entry: transport, sent-by host/port and parameters (branch, rport...)."""

    transport: str
    host: str
    port: int | None = None
    params: dict[str, str | None] = field(default_factory=dict)

    @classmethod
    def parse(cls, text: str) -> Via:
        match = _VIA_RE.match(text.strip())
        if match is None or match.group(1).upper() != "SIP":
            raise SipParseError(f"bad Via protocol {text.strip()[:30]!r}")
        sent_by, _, params = match.group(4).strip().partition(";")
        host, port = _split_hostport(sent_by)
        return cls(match.group(3).upper(), host, port, _parse_params(params))

    @property
    def branch(self) -> str | None:
        return self.params.get("branch")

    def __str__(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        port = f":{self.port}" if self.port is not None else ""
        return f"SIP/2.0/{self.transport} {host}{port}{_format_params(self.params)}"
