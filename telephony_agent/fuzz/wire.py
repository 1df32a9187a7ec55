"""Mutated SIP messages for fuzzing a live server over the wire.

Why a mutator of our own next to the coverage-guided targets: atheris explores
one parser in-process, but only real sockets reach what a scanner reaches —
transactions, dialogs, calls, timers, the Realtime session and the socket buffers.
This generator starts from well-formed requests (fresh branch and Call-ID each
time, so the transaction layer sees new requests rather than retransmissions),
damages them the way broken gateways and fuzzers do, and plants the inputs that
once made the server raise (a Max-Forwards of thousands of digits, an unterminated
Contact, a port written ``0x10``, an SDP ``c=`` with a host name).

Deterministic for a given seed, so a failing run can be replayed. No I/O here:
the wire test and the abuse benchmark own the sockets.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

__all__ = ["SipMutator", "WireTarget", "seed_requests"]

_METHODS = ("INVITE", "OPTIONS", "BYE", "CANCEL", "ACK", "INFO", "UPDATE", "REGISTER", "FOO")

#: Values that once reached code deeper than the parser, and others in their spirit.
_NASTY_VALUES: tuple[tuple[str, str], ...] = (
    ("Max-Forwards", "7" * 5000),
    ("Max-Forwards", "-1"),
    ("Max-Forwards", "0x10"),
    ("Contact", "<sip:x@127.0.0.1:5060"),
    ("Contact", "<sip:x@127.0.0.1:0x10>"),
    ("Contact", "<sip:x@127.0.0.1:99999>"),
    ("Contact", '"unterminated <sip:x@h>'),
    ("Contact", "*"),
    ("Record-Route", "<sip:proxy.invalid;lr"),
    ("Record-Route", "garbage"),
    ("Route", "<sip:[::1>"),
    ("Expires", "9" * 400),
    ("Expires", "-5"),
    ("Session-Expires", "1" * 300 + ";refresher=uac"),
    ("Min-SE", "abc"),
    ("Content-Length", "9" * 4400),
    ("Content-Length", "-1"),
    ("CSeq", "99999999999 INVITE"),
    ("CSeq", "1"),
    ("Via", "SIP/2.0/UDP"),
    ("Via", "SIP/2.0/UDP host:0x10;branch=z9hG4bKx"),
    ("Retry-After", "9" * 50),
    ("RSeq", "4" * 60),
    ("Timestamp", "1" * 100 + "." + "2" * 100),
    ("To", "<sip:agent@h>;tag=" + "t" * 3000),
    ("Call-ID", "c" * 8000),
    ("From", "sip:x@h;tag=a;tag=b"),
    ("Require", "100rel, foo"),
    ("Content-Type", "application/sdp;" + "x" * 200),
)

_SDP_DAMAGE: tuple[tuple[bytes, bytes], ...] = (
    (b"c=IN IP4 127.0.0.1", b"c=IN IP4 media.example.invalid"),
    (b"c=IN IP4 127.0.0.1", b"c=IN IP4 localhost"),
    (b"c=IN IP4 127.0.0.1", b"c=IN IP6 ::1"),
    (b"c=IN IP4 127.0.0.1", b"c=IN IP4 0.0.0.0"),
    (b"m=audio ", b"m=audio 99999"),
    (b"m=audio ", b"m=video "),
    (b"RTP/AVP", b"RTP/SAVP"),
    (b"a=rtpmap:101 telephone-event/8000", b"a=rtpmap:101 telephone-event/0"),
    (b"a=ptime:20", b"a=ptime:" + b"9" * 500),
    (b"v=0", b"v=1"),
)


@dataclass(frozen=True)
class WireTarget:
    """Where the messages go and where they claim to come from."""

    server_host: str
    server_port: int
    local_host: str
    local_port: int
    transport: str = "UDP"
    #: The port an SDP offer names for our media (nothing needs to listen there).
    media_port: int = 40000


def _sdp(host: str, port: int) -> bytes:
    lines = [
        "v=0",
        f"o=- 1 1 IN IP4 {host}",
        "s=-",
        f"c=IN IP4 {host}",
        "t=0 0",
        f"m=audio {port} RTP/AVP 0 8 101",
        "a=rtpmap:101 telephone-event/8000",
        "a=fmtp:101 0-16",
        "a=ptime:20",
        "a=sendrecv",
    ]
    return ("\r\n".join(lines) + "\r\n").encode()


def seed_requests(target: WireTarget, rng: random.Random) -> list[bytes]:
    """Well-formed requests of every kind the server handles, fresh identifiers each."""
    out: list[bytes] = []
    for method in _METHODS:
        body = _sdp(target.local_host, target.media_port) if method == "INVITE" else b""
        to_tag = ";tag=" + rng.randbytes(4).hex() if method in ("BYE", "INFO", "UPDATE") else ""
        out.append(_request(target, rng, method, body, to_tag))
    return out


def _request(
    target: WireTarget, rng: random.Random, method: str, body: bytes, to_tag: str
) -> bytes:
    host, port = target.server_host, target.server_port
    me = f"{target.local_host}:{target.local_port}"
    lines = [
        f"{method} sip:agent@{host}:{port} SIP/2.0",
        f"Via: SIP/2.0/{target.transport} {me};branch=z9hG4bK{rng.randbytes(6).hex()};rport",
        "Max-Forwards: 70",
        f"From: <sip:fuzz@{target.local_host}>;tag={rng.randbytes(4).hex()}",
        f"To: <sip:agent@{host}:{port}>{to_tag}",
        f"Call-ID: {rng.randbytes(8).hex()}@{target.local_host}",
        f"CSeq: {rng.randrange(1, 1000)} {method}",
        f"Contact: <sip:fuzz@{me}>",
        "User-Agent: wire-fuzz",
    ]
    if body:
        lines.append("Content-Type: application/sdp")
    lines.append(f"Content-Length: {len(body)}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + body


class SipMutator:
    """An endless, reproducible stream of damaged SIP requests for one target."""

    def __init__(self, target: WireTarget, seed: int = 0) -> None:
        self.target = target
        self.rng = random.Random(seed)

    def message(self) -> bytes:
        """The next message: a seed request with one to three kinds of damage."""
        rng = self.rng
        data = rng.choice(seed_requests(self.target, rng))
        for _ in range(rng.randint(1, 3)):
            data = self._mutate(data)
        return data

    def _mutate(self, data: bytes) -> bytes:
        rng = self.rng
        kind = rng.randrange(10)
        if kind == 0:
            return self._nasty_header(data)
        if kind == 1:
            return self._damage_sdp(data)
        if kind == 2:
            return self._flip(data)
        if kind == 3:
            return self._insert(data)
        if kind == 4:
            return self._delete(data)
        if kind == 5:
            return data[: rng.randrange(len(data) + 1)]
        if kind == 6:
            return self._shuffle_lines(data)
        if kind == 7:
            return self._duplicate_line(data)
        if kind == 8:
            return self._drop_line(data)
        return data  # unchanged: a well-formed request keeps the call paths busy

    def _nasty_header(self, data: bytes) -> bytes:
        name, value = self.rng.choice(_NASTY_VALUES)
        lines = data.split(b"\r\n")
        wanted = name.lower().encode() + b":"
        for index, line in enumerate(lines):
            if line.lower().startswith(wanted):
                lines[index] = f"{name}: {value}".encode()
                return b"\r\n".join(lines)
        lines.insert(1, f"{name}: {value}".encode())
        return b"\r\n".join(lines)

    def _damage_sdp(self, data: bytes) -> bytes:
        old, new = self.rng.choice(_SDP_DAMAGE)
        return data.replace(old, new, 1)

    def _flip(self, data: bytes) -> bytes:
        out = bytearray(data)
        for _ in range(self.rng.randint(1, 8)):
            if out:
                out[self.rng.randrange(len(out))] ^= 1 << self.rng.randrange(8)
        return bytes(out)

    def _insert(self, data: bytes) -> bytes:
        rng = self.rng
        at = rng.randrange(len(data) + 1)
        chunk = rng.choice(
            [
                rng.randbytes(rng.randint(1, 16)),
                b"\r\n",
                b"\r\n ",
                b";",
                b",",
                b"<",
                b">",
                b'"',
                b"\x00",
                b"\xc3",
                b":" * rng.randint(1, 4),
                b"9" * rng.randint(1, 6000),
            ]
        )
        return data[:at] + chunk + data[at:]

    def _delete(self, data: bytes) -> bytes:
        if not data:
            return data
        at = self.rng.randrange(len(data))
        return data[:at] + data[at + self.rng.randint(1, 32) :]

    def _lines(self, data: bytes) -> tuple[list[bytes], bytes]:
        head, _, body = data.partition(b"\r\n\r\n")
        return head.split(b"\r\n"), body

    def _shuffle_lines(self, data: bytes) -> bytes:
        lines, body = self._lines(data)
        rest = lines[1:]
        self.rng.shuffle(rest)
        return b"\r\n".join([lines[0], *rest]) + b"\r\n\r\n" + body

    def _duplicate_line(self, data: bytes) -> bytes:
        lines, body = self._lines(data)
        if len(lines) > 1:
            pick = self.rng.randrange(1, len(lines))
            lines.insert(pick, lines[pick])
        return b"\r\n".join(lines) + b"\r\n\r\n" + body

    def _drop_line(self, data: bytes) -> bytes:
        lines, body = self._lines(data)
        if len(lines) > 1:
            del lines[self.rng.randrange(1, len(lines))]
        return b"\r\n".join(lines) + b"\r\n\r\n" + body
