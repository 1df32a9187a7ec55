"""SIP message parsing and serialisation: real-world messages, RFC 3261 grammar corners,
malformed input (always `SipParseError`, with a `partial` request when a 400 can be sent),
TCP stream framing, and fuzzing that nothing but `SipParseError` ever escapes."""

from __future__ import annotations

import itertools
from collections.abc import Callable

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from telephony_agent.sip.dialog import make_response
from telephony_agent.sip.message import (
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
    split_header_values,
)
from telephony_agent.sip.parser import StreamFramer, parse_message
from telephony_agent.sip.transaction import Peer, response_peer

SDP = (
    b"v=0\r\n"
    b"o=- 4000 4000 IN IP4 198.51.100.20\r\n"
    b"s=-\r\n"
    b"c=IN IP4 198.51.100.20\r\n"
    b"t=0 0\r\n"
    b"m=audio 16384 RTP/AVP 0 8 101\r\n"
    b"a=rtpmap:101 telephone-event/8000\r\n"
    b"a=fmtp:101 0-16\r\n"
    b"a=ptime:20\r\n"
    b"a=sendrecv\r\n"
)


def build(lines: list[str], body: bytes = b"", *, length: int | None = None) -> bytes:
    """A message from its start line and header lines, with a correct Content-Length."""
    declared = len(body) if length is None else length
    head = "\r\n".join([*lines, f"Content-Length: {declared}"])
    return head.encode() + b"\r\n\r\n" + body


def request(data: bytes) -> SipRequest:
    message = parse_message(data)
    assert isinstance(message, SipRequest)
    return message


def response(data: bytes) -> SipResponse:
    message = parse_message(data)
    assert isinstance(message, SipResponse)
    return message


TRUNK_INVITE = build(
    [
        "INVITE sip:+15551230000@203.0.113.10:5060 SIP/2.0",
        "Via: SIP/2.0/UDP 198.51.100.20:5060;branch=z9hG4bK-524287-1---8d1b3c1e;rport",
        "Max-Forwards: 69",
        "Record-Route: <sip:198.51.100.20;lr;ftag=a94c095b>",
        "Contact: <sip:+15559870000@198.51.100.20:5060;transport=udp>",
        "To: <sip:+15551230000@203.0.113.10>",
        'From: "WIRELESS CALLER" <sip:+15559870000@198.51.100.20>;tag=a94c095b773be1dd',
        "Call-ID: 8f7a6c2e1b9d4e3f5a6b7c8d9e0f1a2b@198.51.100.20",
        "CSeq: 101 INVITE",
        "Allow: INVITE, ACK, CANCEL, OPTIONS, BYE, REFER, NOTIFY",
        'P-Asserted-Identity: "WIRELESS CALLER" <sip:+15559870000@198.51.100.20>',
        "Supported: timer, replaces",
        "Session-Expires: 1800;refresher=uac",
        "Content-Type: application/sdp",
    ],
    SDP,
)

# SIPp's built-in "uac" scenario: bare addr-spec Contact, a padded [len] Content-Length.
SIPP_INVITE = (
    b"INVITE sip:service@127.0.0.1:5060 SIP/2.0\r\n"
    b"Via: SIP/2.0/UDP 127.0.0.1:5061;branch=z9hG4bK-31337-1-0\r\n"
    b"From: sipp <sip:sipp@127.0.0.1:5061>;tag=31337SIPpTag001\r\n"
    b"To: service <sip:service@127.0.0.1:5060>\r\n"
    b"Call-ID: 1-31337@127.0.0.1\r\n"
    b"CSeq: 1 INVITE\r\n"
    b"Contact: sip:sipp@127.0.0.1:5061\r\n"
    b"Max-Forwards: 70\r\n"
    b"Subject: Performance Test\r\n"
    b"Content-Type: application/sdp\r\n"
    b"Content-Length:   129\r\n"
    b"\r\n"
    b"v=0\r\n"
    b"o=user1 53655765 2353687637 IN IP4 127.0.0.1\r\n"
    b"s=-\r\n"
    b"c=IN IP4 127.0.0.1\r\n"
    b"t=0 0\r\n"
    b"m=audio 6000 RTP/AVP 0\r\n"
    b"a=rtpmap:0 PCMU/8000\r\n"
)

BARESIP_INVITE = build(
    [
        "INVITE sip:agent@192.0.2.5 SIP/2.0",
        "Via: SIP/2.0/UDP 192.0.2.7:5060;branch=z9hG4bK5d1f8a2b6c3e9f10;rport",
        "Contact: <sip:alice-0x55d5c8e0@192.0.2.7:5060;transport=udp>",
        "Max-Forwards: 70",
        "To: <sip:agent@192.0.2.5>",
        'From: "Alice" <sip:alice@example.org>;tag=3b1a5d6e8f0c2a4b',
        "Call-ID: 7c0f2a5b3e6d9a1c",
        "CSeq: 12345 INVITE",
        "User-Agent: baresip v3.10.0 (x86_64/linux)",
        "Allow: INVITE,ACK,BYE,CANCEL,OPTIONS,NOTIFY,SUBSCRIBE,INFO,MESSAGE,REFER,UPDATE",
        "Supported: replaces,norefersub,100rel",
        "Content-Type: application/sdp",
    ],
    SDP,
)

OK_200 = build(
    [
        "SIP/2.0 200 OK",
        "Via: SIP/2.0/UDP 203.0.113.10:5060;branch=z9hG4bKabc;rport=5060;received=203.0.113.10",
        "Record-Route: <sip:p2.example.com;lr>, <sip:p1.example.com;lr>",
        "Record-Route: <sip:p0.example.com;lr>",
        'From: "Agent" <sip:agent@203.0.113.10>;tag=f00d',
        "To: <sip:+15559870000@carrier.example>;tag=as58f4201b",
        "Call-ID: out-1@203.0.113.10",
        "CSeq: 7 INVITE",
        "Contact: <sip:+15559870000@198.51.100.20:5060>",
        "Content-Type: application/sdp",
    ],
    SDP,
)

RINGING_180 = build(
    [
        "SIP/2.0 180 Ringing",
        "Via: SIP/2.0/UDP 203.0.113.10:5060;branch=z9hG4bKabc",
        "From: <sip:agent@203.0.113.10>;tag=f00d",
        "To: <sip:+15559870000@carrier.example>;tag=as58f4201b",
        "Call-ID: out-1@203.0.113.10",
        "CSeq: 7 INVITE",
    ]
)

UNAUTHORIZED_401 = build(
    [
        "SIP/2.0 401 Unauthorized",
        "Via: SIP/2.0/UDP 203.0.113.10:5060;branch=z9hG4bKreg1",
        "From: <sip:agent@example.com>;tag=r1",
        "To: <sip:agent@example.com>;tag=srv",
        "Call-ID: reg-1",
        "CSeq: 1 REGISTER",
        'WWW-Authenticate: Digest realm="example.com", nonce="abc,def", algorithm=MD5',
        "Date: Sat, 13 Nov 2010 23:29:00 GMT",
    ]
)

SAMPLES = [TRUNK_INVITE, SIPP_INVITE, BARESIP_INVITE, OK_200, RINGING_180, UNAUTHORIZED_401]


def minimal_invite(*extra: str, body: bytes = b"") -> bytes:
    return build(
        [
            "INVITE sip:bob@example.com SIP/2.0",
            "Via: SIP/2.0/UDP 192.0.2.1:5060;branch=z9hG4bKmin",
            "From: <sip:alice@example.com>;tag=1",
            "To: <sip:bob@example.com>",
            "Call-ID: min-1",
            "CSeq: 1 INVITE",
            *extra,
        ],
        body,
    )


# ---------------------------------------------------------------------- real-world messages


def test_trunk_invite() -> None:
    invite = request(TRUNK_INVITE)
    assert invite.method == "INVITE"
    assert invite.uri == "sip:+15551230000@203.0.113.10:5060"
    via = invite.top_via
    assert (via.transport, via.host, via.port) == ("UDP", "198.51.100.20", 5060)
    assert via.branch == "z9hG4bK-524287-1---8d1b3c1e"
    assert "rport" in via.params and via.params["rport"] is None
    assert invite.cseq == (101, "INVITE")
    assert invite.call_id == "8f7a6c2e1b9d4e3f5a6b7c8d9e0f1a2b@198.51.100.20"
    sender = NameAddr.parse(invite.headers.get("From") or "")
    assert sender.display == "WIRELESS CALLER"
    assert sender.tag == "a94c095b773be1dd"
    assert SipUri.parse(sender.uri).user == "+15559870000"
    assert NameAddr.parse(invite.headers.get("To") or "").tag is None
    assert invite.headers.get_all("Allow") == [
        "INVITE",
        "ACK",
        "CANCEL",
        "OPTIONS",
        "BYE",
        "REFER",
        "NOTIFY",
    ]
    assert invite.headers.get_all("Record-Route") == ["<sip:198.51.100.20;lr;ftag=a94c095b>"]
    assert invite.headers.get("Session-Expires") == "1800;refresher=uac"
    assert invite.body == SDP


def test_sipp_uac_invite() -> None:
    invite = request(SIPP_INVITE)
    assert invite.uri == "sip:service@127.0.0.1:5060"
    assert invite.top_via.branch == "z9hG4bK-31337-1-0"
    contact = NameAddr.parse(invite.headers.get_all("Contact")[0])
    assert contact.uri == "sip:sipp@127.0.0.1:5061"
    assert contact.display is None
    sender = NameAddr.parse(invite.headers.get("From") or "")
    assert (sender.display, sender.tag) == ("sipp", "31337SIPpTag001")
    assert len(invite.body) == 129
    assert invite.body.startswith(b"v=0\r\n") and invite.body.endswith(b"PCMU/8000\r\n")
    assert invite.headers.get("Subject") == "Performance Test"


def test_baresip_invite() -> None:
    invite = request(BARESIP_INVITE)
    assert invite.cseq == (12345, "INVITE")
    assert invite.headers.get_all("Supported") == ["replaces", "norefersub", "100rel"]
    assert len(invite.headers.get_all("Allow")) == 11
    contact = SipUri.parse(NameAddr.parse(invite.headers.get_all("Contact")[0]).uri)
    assert contact.user == "alice-0x55d5c8e0"
    assert contact.params == {"transport": "udp"}
    assert invite.headers.get("User-Agent") == "baresip v3.10.0 (x86_64/linux)"


def test_200_ok_with_record_route_stack() -> None:
    ok = response(OK_200)
    assert (ok.status, ok.reason) == (200, "OK")
    assert ok.cseq == (7, "INVITE")
    assert ok.top_via.params["received"] == "203.0.113.10"
    assert ok.headers.get_all("Record-Route") == [
        "<sip:p2.example.com;lr>",
        "<sip:p1.example.com;lr>",
        "<sip:p0.example.com;lr>",
    ]
    assert NameAddr.parse(ok.headers.get("To") or "").tag == "as58f4201b"
    assert ok.body == SDP


def test_provisional_and_auth_challenge() -> None:
    ringing = response(RINGING_180)
    assert (ringing.status, ringing.reason, ringing.body) == (180, "Ringing", b"")
    challenge = response(UNAUTHORIZED_401)
    # Commas inside WWW-Authenticate and Date are part of the value, never a list.
    assert challenge.headers.get_all("WWW-Authenticate") == [
        'Digest realm="example.com", nonce="abc,def", algorithm=MD5'
    ]
    assert challenge.headers.get_all("Date") == ["Sat, 13 Nov 2010 23:29:00 GMT"]


@pytest.mark.parametrize("status_line", ["SIP/2.0 183", "SIP/2.0 183 ", "sip/2.0 183 "])
def test_status_line_with_empty_reason(status_line: str) -> None:
    data = RINGING_180.replace(b"SIP/2.0 180 Ringing", status_line.encode(), 1)
    assert (response(data).status, response(data).reason) == (183, "")


def test_reason_phrase_keeps_inner_spaces_and_utf8() -> None:
    data = RINGING_180.replace(b"180 Ringing", "180 Ça sonne  encore".encode(), 1)
    assert response(data).reason == "Ça sonne  encore"


# ---------------------------------------------------------------------- header names


COMPACT = {
    "v": "Via",
    "f": "From",
    "t": "To",
    "i": "Call-ID",
    "m": "Contact",
    "l": "Content-Length",
    "c": "Content-Type",
    "k": "Supported",
    "s": "Subject",
}


@pytest.mark.parametrize(("short", "full"), sorted(COMPACT.items()))
def test_compact_form_names(short: str, full: str) -> None:
    headers = Headers([(short, "x"), (short.upper(), "y")])
    assert list(headers) == [(full, "x"), (full, "y")]
    assert headers.get(full) == "x"
    assert headers.get(short) == "x"


def test_message_written_entirely_in_compact_form() -> None:
    data = (
        b"INVITE sip:bob@example.com SIP/2.0\r\n"
        b"v: SIP/2.0/UDP 192.0.2.1;branch=z9hG4bKcompact\r\n"
        b"f: <sip:alice@example.com>;tag=9\r\n"
        b"t: <sip:bob@example.com>\r\n"
        b"i: compact-1\r\n"
        b"CSeq: 3 INVITE\r\n"
        b"m: <sip:alice@192.0.2.1>\r\n"
        b"k: 100rel, timer\r\n"
        b"s: hello\r\n"
        b"c: application/sdp\r\n"
        b"l: 4\r\n"
        b"\r\n"
        b"v=0\r\nJUNK"
    )
    invite = request(data)
    assert invite.call_id == "compact-1"
    assert invite.top_via.branch == "z9hG4bKcompact"
    assert invite.headers.get("Content-Type") == "application/sdp"
    assert invite.headers.get_all("Supported") == ["100rel", "timer"]
    assert invite.headers.get("Subject") == "hello"
    assert invite.body == b"v=0\r"
    assert NameAddr.parse(invite.headers.get("From") or "").tag == "9"


def test_header_names_are_case_insensitive() -> None:
    data = (
        b"OPTIONS sip:bob@example.com SIP/2.0\r\n"
        b"VIA: SIP/2.0/UDP 192.0.2.1;branch=z9hG4bKcase\r\n"
        b"from: <sip:alice@example.com>;tag=9\r\n"
        b"tO: <sip:bob@example.com>\r\n"
        b"CALL-ID: case-1\r\n"
        b"cseq: 3 OPTIONS\r\n"
        b"x-custom-HEADER: yes\r\n"
        b"www-authenticate: Digest a=b\r\n"
        b"content-length: 0\r\n"
        b"\r\n"
    )
    options = request(data)
    for spelling in ("Via", "via", "VIA", "v"):
        assert options.headers.get(spelling) == "SIP/2.0/UDP 192.0.2.1;branch=z9hG4bKcase"
    assert options.headers.get("call-id") == "case-1"
    assert options.headers.get("X-CUSTOM-header") == "yes"
    names = [name for name, _ in options.headers]
    assert names == [
        "Via",
        "From",
        "To",
        "Call-ID",
        "CSeq",
        "X-Custom-Header",
        "WWW-Authenticate",
        "Content-Length",
    ]
    assert "cseq" in options.headers and "Route" not in options.headers


def test_whitespace_around_colon_and_empty_values() -> None:
    data = minimal_invite("Subject   :   spaced  ", "Organization:", "X-Tab:\tvalue")
    invite = request(data)
    assert invite.headers.get("Subject") == "spaced"
    assert invite.headers.get("Organization") == ""
    assert invite.headers.get("X-Tab") == "value"


# ---------------------------------------------------------------------- multi-valued headers


def test_via_repeated_and_comma_separated_keeps_order() -> None:
    data = build(
        [
            "BYE sip:bob@192.0.2.4 SIP/2.0",
            "Via: SIP/2.0/UDP p3.example.com;branch=z9hG4bK3, SIP/2.0/TCP p2.example.com;"
            "branch=z9hG4bK2",
            "Max-Forwards: 68",
            "v: SIP/2.0/UDP [2001:db8::1]:5070;branch=z9hG4bK1;received=2001:db8::1",
            "From: <sip:alice@example.com>;tag=1",
            "To: <sip:bob@example.com>;tag=2",
            "Call-ID: via-1",
            "CSeq: 2 BYE",
        ]
    )
    bye = request(data)
    vias = [Via.parse(value) for value in bye.headers.get_all("Via")]
    assert [(v.transport, v.host, v.branch) for v in vias] == [
        ("UDP", "p3.example.com", "z9hG4bK3"),
        ("TCP", "p2.example.com", "z9hG4bK2"),
        ("UDP", "2001:db8::1", "z9hG4bK1"),
    ]
    assert vias[2].port == 5070
    assert vias[2].params["received"] == "2001:db8::1"
    assert bye.top_via == vias[0]


def test_contact_commas_inside_quotes_and_angle_brackets() -> None:
    value = (
        '"Doe, John" <sip:john@192.0.2.9>;q=0.7, '
        '"Quote \\" and, comma" <sip:q@192.0.2.9>, '
        "<sip:odd,user@192.0.2.9;transport=tcp>;expires=60, "
        "sip:bare@192.0.2.10;q=0.1"
    )
    contacts = Headers([("m", value)]).get_all("Contact")
    assert contacts == [
        '"Doe, John" <sip:john@192.0.2.9>;q=0.7',
        '"Quote \\" and, comma" <sip:q@192.0.2.9>',
        "<sip:odd,user@192.0.2.9;transport=tcp>;expires=60",
        "sip:bare@192.0.2.10;q=0.1",
    ]
    parsed = [NameAddr.parse(c) for c in contacts]
    assert parsed[0].display == "Doe, John"
    assert parsed[0].params == {"q": "0.7"}
    assert parsed[1].display == 'Quote \\" and, comma'
    assert parsed[2].uri == "sip:odd,user@192.0.2.9;transport=tcp"
    assert parsed[2].params == {"expires": "60"}
    assert parsed[3].uri == "sip:bare@192.0.2.10"
    assert parsed[3].params == {"q": "0.1"}


def test_route_and_record_route_lists() -> None:
    data = minimal_invite(
        "Route: <sip:edge.example.com;lr>,<sip:core.example.com;lr;x=a,b>",
        "Route: <sip:last.example.com;lr>",
        'Record-Route: "P, one" <sip:rr1.example.com;lr>, <sip:rr2.example.com;lr>',
    )
    invite = request(data)
    assert invite.headers.get_all("Route") == [
        "<sip:edge.example.com;lr>",
        "<sip:core.example.com;lr;x=a,b>",
        "<sip:last.example.com;lr>",
    ]
    assert invite.headers.get_all("Record-Route") == [
        '"P, one" <sip:rr1.example.com;lr>',
        "<sip:rr2.example.com;lr>",
    ]
    # get() returns the first field unsplit; single-valued headers are never split.
    assert invite.headers.get("Route") == (
        "<sip:edge.example.com;lr>,<sip:core.example.com;lr;x=a,b>"
    )


def test_split_header_values_edge_cases() -> None:
    assert split_header_values("") == []
    assert split_header_values(" , ,a,, b ,") == ["a", "b"]
    assert split_header_values('"unterminated, quote') == ['"unterminated, quote']
    assert split_header_values("<a,b>>,c") == ["<a,b>>", "c"]


def test_headers_set_remove_add_first() -> None:
    headers = Headers([("Via", "a"), ("To", "t"), ("v", "b"), ("Via", "c")])
    headers.add_first("Via", "top")
    assert headers.get_all("Via") == ["top", "a", "b", "c"]
    headers.set("via", "only")
    assert list(headers) == [("Via", "only"), ("To", "t")]
    headers.set("Subject", "new")
    assert list(headers)[-1] == ("Subject", "new")
    clone = headers.copy()
    headers.remove("VIA")
    assert headers.get("Via") is None and clone.get("Via") == "only"
    assert len(headers) == 2 and len(clone) == 3


# ---------------------------------------------------------------------- folding, quoting


def test_header_folding_with_spaces_and_tabs() -> None:
    data = (
        b"INVITE sip:bob@example.com SIP/2.0\r\n"
        b"Via: SIP/2.0/UDP 192.0.2.1:5060\r\n"
        b"    ;branch=z9hG4bKfold\r\n"
        b"From: <sip:alice@example.com>\r\n"
        b"\t;tag=folded\r\n"
        b"To: <sip:bob@example.com>\r\n"
        b"Subject: I know you're there,\r\n"
        b"         pick up the phone\r\n"
        b"   and talk to me!\r\n"
        b"Call-ID: fold-1\r\n"
        b"CSeq: 1\r\n"
        b"  INVITE\r\n"
        b"Content-Length: 0\r\n"
        b"\r\n"
    )
    invite = request(data)
    assert invite.headers.get("Subject") == "I know you're there, pick up the phone and talk to me!"
    assert invite.top_via.branch == "z9hG4bKfold"
    assert NameAddr.parse(invite.headers.get("From") or "").tag == "folded"
    assert invite.cseq == (1, "INVITE")


def test_name_addr_forms() -> None:
    quoted = NameAddr.parse('"Alice \\"Al\\" <CEO>; Smith" <sip:alice@example.com>;tag=x;lr')
    assert quoted.display == 'Alice \\"Al\\" <CEO>; Smith'
    assert quoted.uri == "sip:alice@example.com"
    assert quoted.params == {"tag": "x", "lr": None}
    token = NameAddr.parse("Bob Smith <sip:bob@example.com;transport=tcp> ; TAG = 7 ")
    assert token.display == "Bob Smith"
    assert token.uri == "sip:bob@example.com;transport=tcp"
    assert token.tag == "7"
    spec = NameAddr.parse("sip:carol@example.com;tag=88")
    assert (spec.uri, spec.tag, spec.display) == ("sip:carol@example.com", "88", None)
    assert NameAddr.parse("  <tel:+15551234567;phone-context=example.com>  ").uri == (
        "tel:+15551234567;phone-context=example.com"
    )
    assert NameAddr.parse("*").uri == "*"
    assert NameAddr.parse('"" <sip:x@example.com>').display == ""


def test_name_addr_serialises_back() -> None:
    original = NameAddr.parse('"Doe, John" <sip:john@example.com;transport=tcp>;tag=1')
    again = NameAddr.parse(str(original))
    assert again == original
    assert str(original.with_tag("2")).endswith(";tag=2")
    assert original.with_tag("2").params == {"tag": "2"}


def test_quoted_parameter_values_keep_semicolons() -> None:
    addr = NameAddr.parse('<sip:a@example.com>;note="x;y=z";tag=3')
    assert addr.params == {"note": '"x;y=z"', "tag": "3"}


def test_sip_uri_forms() -> None:
    uri = SipUri.parse("SIP:Alice:secret@Example.COM:5070;transport=TCP;lr?subject=hi")
    assert (uri.scheme, uri.user, uri.host, uri.port) == ("sip", "Alice", "example.com", 5070)
    assert uri.params == {"transport": "TCP", "lr": None}
    assert str(SipUri.parse("sips:bob@example.com")) == "sips:bob@example.com"
    tel = SipUri.parse("tel:+15551234567;ext=12")
    assert (tel.scheme, tel.user, tel.params) == ("tel", "+15551234567", {"ext": "12"})
    assert str(tel) == "tel:+15551234567;ext=12"
    assert SipUri.parse("sip:example.com").user is None


def test_sip_uri_user_part_with_parameters() -> None:
    # Number-portability style user parameters, common on trunks (RFC 4694).
    uri = SipUri.parse("sip:+15551230000;npdi;rn=+15554440000@gw.example.com:5060;user=phone")
    assert uri.user == "+15551230000;npdi;rn=+15554440000"
    assert (uri.host, uri.port, uri.params) == ("gw.example.com", 5060, {"user": "phone"})
    assert SipUri.parse("sip:a?b@example.com").host == "example.com"


@pytest.mark.parametrize(
    ("text", "host", "port"),
    [
        ("sip:[2001:db8::10]:5070", "2001:db8::10", 5070),
        ("sip:bob@[2001:DB8::10]", "2001:db8::10", None),
        ("sip:bob@[::1]:5060;transport=udp", "::1", 5060),
    ],
)
def test_ipv6_uri_hosts(text: str, host: str, port: int | None) -> None:
    uri = SipUri.parse(text)
    assert (uri.host, uri.port) == (host, port)
    assert SipUri.parse(str(uri)) == uri
    assert f"[{host}]" in str(uri)


def test_ipv6_request() -> None:
    data = build(
        [
            "INVITE sip:agent@[2001:db8::10]:5070 SIP/2.0",
            "Via: SIP/2.0/UDP [2001:db8::20];branch=z9hG4bK6;rport",
            "From: <sip:caller@[2001:db8::20]>;tag=6",
            "To: <sip:agent@[2001:db8::10]:5070>",
            "Call-ID: v6",
            "CSeq: 1 INVITE",
        ]
    )
    invite = request(data)
    assert invite.top_via.host == "2001:db8::20"
    assert invite.top_via.port is None
    assert str(invite.top_via) == "SIP/2.0/UDP [2001:db8::20];branch=z9hG4bK6;rport"


def test_via_forms() -> None:
    spaced = Via.parse("SIP / 2.0 / udp host.example.com:5060 ;branch=z9hG4bKsp ; rport")
    assert (spaced.transport, spaced.host, spaced.port) == ("UDP", "host.example.com", 5060)
    assert spaced.params == {"branch": "z9hG4bKsp", "rport": None}
    tabbed = Via.parse("SIP/2.0/TLS\tedge.example.com;branch=z9hG4bKt")
    assert (tabbed.transport, tabbed.host) == ("TLS", "edge.example.com")
    assert Via.parse(str(spaced)) == spaced


@pytest.mark.parametrize(
    ("cseq", "expected"),
    [("1 INVITE", (1, "INVITE")), ("  4711   bye ", (4711, "BYE")), ("0 ACK", (0, "ACK"))],
)
def test_parse_cseq(cseq: str, expected: tuple[int, str]) -> None:
    assert parse_cseq(cseq) == expected


@pytest.mark.parametrize(
    "cseq", ["", "INVITE", "1", "1 INVITE x", "-1 INVITE", "2147483648 INVITE", "1 INV/ITE", "² A"]
)
def test_parse_cseq_rejects(cseq: str) -> None:
    with pytest.raises(SipParseError):
        parse_cseq(cseq)


# ---------------------------------------------------------------------- framing


def test_body_longer_than_content_length_is_truncated() -> None:
    data = minimal_invite(body=b"v=0\r\n") + b"trailing garbage"
    assert request(data).body == b"v=0\r\n"


def test_body_shorter_than_content_length_is_an_error_with_partial() -> None:
    data = minimal_invite(body=b"v=0\r\n")[:-2]
    with pytest.raises(SipParseError, match="shorter") as caught:
        parse_message(data)
    assert caught.value.status == 400
    assert caught.value.partial is not None
    assert caught.value.partial.call_id == "min-1"


def test_no_content_length_takes_the_rest_of_the_datagram() -> None:
    data = minimal_invite(body=b"abc").replace(b"Content-Length: 3\r\n", b"")
    assert request(data).body == b"abc"


def test_headers_only_datagram_without_blank_line() -> None:
    data = minimal_invite().replace(b"\r\n\r\n", b"\r\n")
    assert request(data).body == b""


def test_bare_lf_line_endings_are_tolerated() -> None:
    data = minimal_invite(body=b"v=0\n").replace(b"\r\n", b"\n")
    invite = request(data)
    assert invite.call_id == "min-1"
    assert invite.body == b"v=0\n"


@pytest.mark.parametrize("prefix", [b"\r\n", b"\r\n\r\n", b"\r\n\r\n\r\n\r\n\r\n"])
def test_leading_crlfs_are_ignored(prefix: bytes) -> None:
    invite = request(prefix + TRUNK_INVITE)
    assert invite.call_id == "8f7a6c2e1b9d4e3f5a6b7c8d9e0f1a2b@198.51.100.20"
    assert invite.body == SDP


def test_size_limits() -> None:
    padding = "X-Pad: " + "a" * 1000
    too_big = minimal_invite(*([padding] * 70))
    assert len(too_big) > MAX_MESSAGE_BYTES
    with pytest.raises(SipParseError, match="too large") as caught:
        parse_message(too_big)
    assert caught.value.status == 513
    with pytest.raises(SipParseError, match="line too long"):
        parse_message(minimal_invite("X-Long: " + "b" * MAX_LINE_BYTES))
    with pytest.raises(SipParseError, match="too many header lines"):
        parse_message(minimal_invite(*(["X-N: 1"] * MAX_HEADER_LINES)))
    # Just under the limits parses.
    assert request(minimal_invite("X-Long: " + "b" * (MAX_LINE_BYTES - 10)))
    assert request(minimal_invite(*(["X-N: 1"] * (MAX_HEADER_LINES - 10))))


# ---------------------------------------------------------------------- round trip


def same_message(a: SipMessage, b: SipMessage) -> None:
    assert type(a) is type(b)
    if isinstance(a, SipRequest) and isinstance(b, SipRequest):
        assert (a.method, a.uri) == (b.method, b.uri)
    if isinstance(a, SipResponse) and isinstance(b, SipResponse):
        assert (a.status, a.reason) == (b.status, b.reason)
    strip = [(n, v) for n, v in a.headers if n != "Content-Length"]
    assert strip == [(n, v) for n, v in b.headers if n != "Content-Length"]
    assert a.body == b.body


@pytest.mark.parametrize("data", SAMPLES)
def test_round_trip(data: bytes) -> None:
    first = parse_message(data)
    wire = first.to_bytes()
    second = parse_message(wire)
    same_message(first, second)
    assert second.to_bytes() == wire
    assert second.headers.get("Content-Length") == str(len(first.body))


def test_serialised_form() -> None:
    headers = Headers([("v", "SIP/2.0/UDP h;branch=z9hG4bKs"), ("Content-Length", "99")])
    message = SipRequest("OPTIONS", "sip:x@example.com", headers, b"hi")
    assert message.to_bytes() == (
        b"OPTIONS sip:x@example.com SIP/2.0\r\n"
        b"Via: SIP/2.0/UDP h;branch=z9hG4bKs\r\n"
        b"Content-Length: 2\r\n"
        b"\r\n"
        b"hi"
    )
    assert SipResponse(486, "Busy Here").to_bytes() == (
        b"SIP/2.0 486 Busy Here\r\nContent-Length: 0\r\n\r\n"
    )


# ---------------------------------------------------------------------- malformed input

#: (description, bytes, substring of the reason, whether `.partial` must be set)
MALFORMED: list[tuple[str, bytes, str, bool]] = [
    ("empty", b"", "empty", False),
    ("only CRLFs", b"\r\n\r\n\r\n", "empty", False),
    ("garbage", b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03", "UTF-8", False),
    ("http", b"GET / HTTP/1.1\r\nHost: x\r\n\r\n", "start line", False),
    ("sip version", minimal_invite().replace(b"SIP/2.0\r\n", b"SIP/3.0\r\n", 1), "start", False),
    ("no uri", b"INVITE SIP/2.0\r\nVia: x\r\n\r\n", "start line", False),
    ("status 2000", RINGING_180.replace(b"180 Ringing", b"1800 Ringing"), "start line", False),
    ("status 700", RINGING_180.replace(b"180 Ringing", b"700 Nope"), "start line", False),
    ("no colon", minimal_invite("NoColonHere"), "malformed header line", False),
    ("bad name", minimal_invite("Bad Name: x"), "malformed header line", False),
    ("not utf-8", minimal_invite().replace(b"min-1", b"min-\xff"), "UTF-8", False),
    ("missing Via", minimal_invite().replace(b"Via:", b"X-Via:"), "missing Via", False),
    ("missing From", minimal_invite().replace(b"From:", b"X-From:"), "missing From", False),
    ("missing To", minimal_invite().replace(b"\r\nTo:", b"\r\nX-To:"), "missing To", False),
    ("missing Call-ID", minimal_invite().replace(b"Call-ID:", b"X:"), "missing Call-ID", False),
    ("missing CSeq", minimal_invite().replace(b"CSeq:", b"X:"), "missing CSeq", False),
    ("bad Via", minimal_invite().replace(b"SIP/2.0/UDP", b"SIP/2.0"), "Via", False),
    ("Via port", minimal_invite().replace(b"1:5060", b"1:99999"), "Via", False),
    ("Via digit", minimal_invite().replace(b"1:5060", "1:5²".encode()), "Via", False),
    ("Via huge port", minimal_invite().replace(b"1:5060", b"1:" + b"9" * 5000), "Via", False),
    ("Via empty", minimal_invite().replace(b"SIP/2.0/UDP 192.0.2.1:5060", b","), "Via", False),
    ("CSeq", minimal_invite().replace(b"CSeq: 1 INVITE", b"CSeq: one INVITE"), "CSeq", True),
    ("CSeq digit", minimal_invite().replace(b"CSeq: 1", "CSeq: ²".encode()), "CSeq", True),
    ("CSeq method", minimal_invite().replace(b"1 INVITE", b"1 BYE"), "CSeq method", True),
    ("From", minimal_invite().replace(b"<sip:alice@example.com>", b"<http://x>"), "From", True),
    ("To", minimal_invite().replace(b"<sip:bob@example.com>", b"<sip:bob@"), "To", True),
    ("R-URI", minimal_invite().replace(b"INVITE sip:bob", b"INVITE mailto:bob"), "URI", True),
    ("Max-Forwards", minimal_invite("Max-Forwards: ten"), "Max-Forwards", True),
    ("Max-Forwards digit", minimal_invite("Max-Forwards: ٣"), "Max-Forwards", True),
    ("C-L word", minimal_invite().replace(b"Length: 0", b"Length: zero"), "Content-Length", True),
    ("C-L neg", minimal_invite().replace(b"Length: 0", b"Length: -1"), "Content-Length", True),
    ("C-L plus", minimal_invite().replace(b"Length: 0", b"Length: +0"), "Content-Length", True),
    ("C-L under", minimal_invite().replace(b"Length: 0", b"Length: 1_0"), "Content-Length", True),
    ("C-L digit", minimal_invite().replace(b"Length: 0", "Length: ²".encode()), "Length", True),
    ("C-L huge", minimal_invite().replace(b"Length: 0", b"Length: " + b"9" * 5000), "Length", True),
    ("C-L short", minimal_invite().replace(b"Length: 0", b"Length: 10"), "shorter", True),
    (
        "C-L bad, no Via",
        minimal_invite().replace(b"Length: 0", b"Length: x").replace(b"Via:", b"X-Via:"),
        "Content-Length",
        False,
    ),
    (
        "C-L short, no Call-ID",
        minimal_invite().replace(b"Length: 0", b"Length: 5").replace(b"Call-ID:", b"X:"),
        "shorter",
        False,
    ),
    (
        "C-L bad, bad Via",
        minimal_invite().replace(b"Length: 0", b"Length: x").replace(b"SIP/2.0/UDP", b"HTTP"),
        "Content-Length",
        False,
    ),
    ("response CSeq", RINGING_180.replace(b"CSeq: 7", b"CSeq: x"), "CSeq", False),
    ("response C-L", RINGING_180.replace(b"Length: 0", b"Length: 9"), "shorter", False),
]


@pytest.mark.parametrize(
    ("data", "reason", "has_partial"),
    [case[1:] for case in MALFORMED],
    ids=[case[0] for case in MALFORMED],
)
def test_malformed_messages(data: bytes, reason: str, has_partial: bool) -> None:
    with pytest.raises(SipParseError) as caught:
        parse_message(data)
    error = caught.value
    assert reason in error.reason
    assert str(error) == error.reason
    assert (error.partial is not None) is has_partial
    if error.partial is not None:
        assert error.status == 400
        # Whatever made the request bad, it can be answered: a 400 built from it
        # serialises (copying the bad header back verbatim) and has somewhere to go.
        answer = make_response(error.partial, error.status, "Bad Request")
        assert answer.to_bytes().startswith(b"SIP/2.0 400 Bad Request\r\nVia: SIP/2.0/UDP")
        assert answer.headers.get("Call-ID") == error.partial.call_id
        peer = response_peer(error.partial, Peer("UDP", "192.0.2.99", 5099))
        assert peer.port in (5060, 5099)


# ---------------------------------------------------------------------- TCP framing


def stream_of(messages: list[bytes], keepalive: bytes = b"") -> bytes:
    return keepalive + keepalive.join(messages) + keepalive


def call_ids(items: list[SipMessage | SipParseError]) -> list[str]:
    out: list[str] = []
    for item in items:
        assert not isinstance(item, SipParseError), item.reason
        out.append(item.call_id)
    return out


EXPECTED_IDS = [parse_message(m).call_id for m in SAMPLES]


def test_framer_whole_stream_at_once() -> None:
    framer = StreamFramer()
    assert call_ids(framer.feed(stream_of(SAMPLES))) == EXPECTED_IDS
    assert not framer.broken
    assert framer.feed(b"") == []


def test_framer_byte_by_byte_with_keepalives() -> None:
    framer = StreamFramer()
    out: list[SipMessage | SipParseError] = []
    for byte in stream_of(SAMPLES, b"\r\n\r\n"):
        out.extend(framer.feed(bytes([byte])))
    assert call_ids(out) == EXPECTED_IDS
    bodies = [item.body for item in out if not isinstance(item, SipParseError)]
    assert bodies == [parse_message(m).body for m in SAMPLES]


def test_framer_single_crlf_pong_between_messages() -> None:
    framer = StreamFramer()
    out = framer.feed(b"\r\n" + SAMPLES[0] + b"\r\n" + SAMPLES[1] + b"\r\n\r\n\r\n")
    assert call_ids(out) == EXPECTED_IDS[:2]
    assert framer.feed(b"\r\n") == []


@settings(max_examples=60, deadline=None)
@given(
    cuts=st.lists(st.integers(0, len(stream_of(SAMPLES, b"\r\n\r\n"))), max_size=30),
    keepalive=st.sampled_from([b"", b"\r\n", b"\r\n\r\n"]),
)
def test_framer_random_chunks(cuts: list[int], keepalive: bytes) -> None:
    data = stream_of(SAMPLES, keepalive)
    bounds = sorted({0, len(data), *(c for c in cuts if c <= len(data))})
    framer = StreamFramer()
    out: list[SipMessage | SipParseError] = []
    for start, end in itertools.pairwise(bounds):
        out.extend(framer.feed(data[start:end]))
    assert call_ids(out) == EXPECTED_IDS
    assert not framer.broken


def test_framer_bad_message_with_length_does_not_break_the_stream() -> None:
    bad = minimal_invite().replace(b"Via:", b"X-Via:")
    framer = StreamFramer()
    out = framer.feed(bad + SAMPLES[0])
    assert isinstance(out[0], SipParseError) and "missing Via" in out[0].reason
    assert call_ids(out[1:]) == EXPECTED_IDS[:1]
    assert not framer.broken


def test_framer_compact_content_length() -> None:
    message = minimal_invite(body=b"abc").replace(b"Content-Length: 3", b"l: 3")
    out = StreamFramer().feed(message + message)
    assert [m.body for m in out if not isinstance(m, SipParseError)] == [b"abc", b"abc"]


@pytest.mark.parametrize(
    ("stream", "reason"),
    [
        (minimal_invite().replace(b"Content-Length: 0\r\n", b""), "Content-Length"),
        (minimal_invite().replace(b"Length: 0", b"Length: x"), "Content-Length"),
        (minimal_invite().replace(b"Length: 0", b"Length: " + b"9" * 5000), "Content-Length"),
        (minimal_invite().replace(b"Length: 0", b"Length: 70000"), "too large"),
        (b"GET / HTTP/1.1\r\nHost: x\r\n\r\n", "Content-Length"),
        (b"A" * (MAX_MESSAGE_BYTES + 1), "too large"),
    ],
    ids=["no length", "bad length", "huge length", "over limit", "http", "no blank line"],
)
def test_framer_broken_streams(stream: bytes, reason: str) -> None:
    framer = StreamFramer()
    out = framer.feed(stream)
    assert len(out) == 1
    assert isinstance(out[0], SipParseError)
    assert reason in out[0].reason
    assert framer.broken
    assert framer.feed(SAMPLES[0]) == []


def test_framer_waits_for_the_whole_body() -> None:
    framer = StreamFramer()
    assert framer.feed(TRUNK_INVITE[:-10]) == []
    assert call_ids(framer.feed(TRUNK_INVITE[-10:])) == EXPECTED_IDS[:1]


# ---------------------------------------------------------------------- fuzzing


def parses_or_rejects(data: bytes) -> None:
    try:
        message = parse_message(data)
    except SipParseError as error:
        assert isinstance(error.reason, str) and error.reason
        assert error.status in (400, 513)
        if error.partial is not None:
            make_response(error.partial, error.status).to_bytes()
            response_peer(error.partial, Peer("UDP", "192.0.2.1", 5060))
        return
    # Anything accepted serialises and parses back to the same thing.
    same_message(message, parse_message(message.to_bytes()))


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=600))
def test_fuzz_arbitrary_bytes(data: bytes) -> None:
    parses_or_rejects(data)


_MUTATION = st.tuples(
    st.sampled_from(["flip", "insert", "delete", "truncate", "replace"]),
    st.integers(0, len(TRUNK_INVITE)),
    st.binary(min_size=1, max_size=8)
    | st.sampled_from([b"\r\n", b":", b";", b",", b"<", b">", b'"', b" ", b"\r\n ", b"\xc3"]),
)


def mutate(data: bytes, mutations: list[tuple[str, int, bytes]]) -> bytes:
    out = bytearray(data)
    for kind, position, chunk in mutations:
        at = min(position, len(out))
        if kind == "flip" and at < len(out):
            out[at] ^= chunk[0] or 1
        elif kind == "insert":
            out[at:at] = chunk
        elif kind == "delete":
            del out[at : at + len(chunk)]
        elif kind == "truncate":
            del out[at:]
        elif kind == "replace":
            out[at : at + len(chunk)] = chunk
    return bytes(out)


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    base=st.sampled_from(SAMPLES),
    mutations=st.lists(_MUTATION, min_size=1, max_size=6),
)
def test_fuzz_mutated_messages(base: bytes, mutations: list[tuple[str, int, bytes]]) -> None:
    parses_or_rejects(mutate(base, mutations))


@settings(max_examples=100, deadline=None)
@given(
    chunks=st.lists(
        st.sampled_from(SAMPLES).map(lambda m: m[:200]) | st.binary(max_size=80), max_size=8
    )
)
def test_fuzz_stream_framer(chunks: list[bytes]) -> None:
    framer = StreamFramer()
    for chunk in chunks:
        for item in framer.feed(chunk):
            assert isinstance(item, SipRequest | SipResponse | SipParseError)


#: Characters that steer the value parsers, mixed with anything else text can hold.
_SIP_TEXT = st.text(
    alphabet=st.sampled_from([*'sipSIP:@;,<>"\\[]=/ .\t?2015tag', "²", "٣", "İ", "\x00"])
    | st.characters(),
    max_size=60,
)

PARSERS: list[Callable[[str], object]] = [
    SipUri.parse,
    NameAddr.parse,
    Via.parse,
    parse_cseq,
]


@pytest.mark.parametrize("parser", PARSERS, ids=lambda p: p.__qualname__)
@settings(max_examples=250, deadline=None)
@given(text=_SIP_TEXT)
def test_fuzz_value_parsers(parser: Callable[[str], object], text: str) -> None:
    for candidate in (text, "sip:" + text, "SIP/2.0/UDP " + text, '"' + text, "<sip:" + text):
        try:
            parsed = parser(candidate)
        except SipParseError:
            continue
        # Whatever parsed also formats without raising.
        str(parsed)


@settings(max_examples=150, deadline=None)
@given(
    fields=st.lists(st.tuples(st.sampled_from(["v", "Via", "m", "X-A", "route"]), _SIP_TEXT)),
    name=st.sampled_from(["via", "Contact", "ROUTE", "x-a", "Subject"]),
)
def test_fuzz_headers(fields: list[tuple[str, str]], name: str) -> None:
    headers = Headers(fields)
    values = headers.get_all(name)
    if name.lower() in ("via", "contact", "route"):
        assert all(value == value.strip() and value for value in values)
    else:
        assert values == [value for field, value in headers if field.lower() == name.lower()]
    headers.set(name, "x")
    assert headers.get(name) == "x"
    headers.remove(name)
    assert name not in headers
