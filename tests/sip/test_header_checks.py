"""Parse-time checks of every header the stack relies on: a bad value is a `SipParseError`
with the request kept for a 400, never an exception deeper in a dialog or a call.

The first cases are the inputs that once got past the parser and raised later (a
Max-Forwards of thousands of digits, an unterminated Contact, a port written 0x10).
"""

from __future__ import annotations

import pytest

from telephony_agent.sip.dialog import Dialog, make_response
from telephony_agent.sip.message import NameAddr, SipParseError, SipRequest
from telephony_agent.sip.parser import MAX_LIST_ENTRIES, parse_message


def invite(*extra: str, contact: str | None = "<sip:caller@192.0.2.10:5062>") -> bytes:
    lines = [
        "INVITE sip:agent@192.0.2.1 SIP/2.0",
        "Via: SIP/2.0/UDP 192.0.2.10:5062;branch=z9hG4bKcheck1;rport",
        "Max-Forwards: 70",
        "From: <sip:caller@192.0.2.10>;tag=a1",
        "To: <sip:agent@192.0.2.1>",
        "Call-ID: checks-1@192.0.2.10",
        "CSeq: 1 INVITE",
    ]
    if contact is not None:
        lines.append(f"Contact: {contact}")
    lines.extend(extra)
    lines.append("Content-Length: 0")
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


def with_header(header: str, value: str) -> bytes:
    """The INVITE with `header` replaced (or added) with `value`."""
    data = invite()
    lines = data.split(b"\r\n")
    wanted = header.lower().encode() + b":"
    for index, line in enumerate(lines):
        if line.lower().startswith(wanted):
            lines[index] = f"{header}: {value}".encode()
            return b"\r\n".join(lines)
    lines.insert(1, f"{header}: {value}".encode())
    return b"\r\n".join(lines)


def rejected(data: bytes) -> SipParseError:
    with pytest.raises(SipParseError) as caught:
        parse_message(data)
    return caught.value


BAD_REQUESTS = [
    ("Max-Forwards of 5000 digits", with_header("Max-Forwards", "7" * 5000), "Max-Forwards"),
    ("Max-Forwards above 255", with_header("Max-Forwards", "256"), "Max-Forwards"),
    ("Max-Forwards in hex", with_header("Max-Forwards", "0x10"), "Max-Forwards"),
    ("Max-Forwards negative", with_header("Max-Forwards", "-1"), "Max-Forwards"),
    ("Max-Forwards with a sign", with_header("Max-Forwards", "+5"), "Max-Forwards"),
    ("Max-Forwards in Arabic digits", with_header("Max-Forwards", "٣"), "Max-Forwards"),
    ("Contact unterminated", invite(contact="<sip:x@192.0.2.10:5062"), "Contact"),
    ("Contact port 0x10", invite(contact="<sip:x@192.0.2.10:0x10>"), "Contact"),
    ("Contact port 0", invite(contact="<sip:x@192.0.2.10:0>"), "Contact"),
    ("Contact port 99999", invite(contact="<sip:x@192.0.2.10:99999>"), "Contact"),
    ("Contact star in an INVITE", invite(contact="*"), "Contact"),
    ("Contact tel URI in an INVITE", invite(contact="<tel:+15551234>"), "Contact"),
    ("Contact host with a NUL", invite(contact="<sip:x@a\x00b>"), "Contact"),
    ("Contact IPv6 that is not", invite(contact="<sip:x@[zz::1]>"), "Contact"),
    ("Contact in a list", invite(contact="<sip:a@192.0.2.10>, <sip:b@"), "Contact"),
    ("Contact user with a space", invite(contact="<sip:te ster@192.0.2.10>"), "Contact"),
    ("Contact params with a quote", invite(contact='<sip:x@192.0.2.10;a"b>'), "Contact"),
    ("Contact with non-ASCII", invite(contact="<sip:xé@192.0.2.10>"), "Contact"),
    ("a lone CR inside a value", with_header("Max-Forwards", "70\r\\\\"), "Max-Forwards"),
    ("a NUL in From", with_header("Subject", "hi\x00there"), "control character"),
    ("Record-Route unterminated", with_header("Record-Route", "<sip:p.example;lr"), "Record"),
    ("Record-Route not an address", with_header("Record-Route", "garbage here"), "Record"),
    ("Route bad IPv6", with_header("Route", "<sip:[::1>"), "Route"),
    ("second Via broken", with_header("Via", "SIP/2.0/UDP a.example;branch=z9hG4bK1, x"), "Via"),
    ("Via port 0x10 below the top", invite("Via: SIP/2.0/UDP h:0x10;branch=z9hG4bK2"), "Via"),
    (
        "too many Vias",
        invite("Via: " + ", ".join(["SIP/2.0/UDP h;branch=z9hG4bKx"] * MAX_LIST_ENTRIES)),
        "Via",
    ),
    ("Expires of 400 digits", with_header("Expires", "9" * 400), "Expires"),
    ("Expires negative", with_header("Expires", "-5"), "Expires"),
    ("Session-Expires huge", with_header("Session-Expires", "1" * 300 + ";refresher=uac"), "Sess"),
    ("Min-SE not a number", with_header("Min-SE", "abc"), "Min-SE"),
    ("Min-Expires empty", with_header("Min-Expires", ""), "Min-Expires"),
    ("RSeq past 2**31", with_header("RSeq", "4" * 12), "RSeq"),
    ("RAck short", with_header("RAck", "1 INVITE"), "RAck"),
    ("RAck huge", with_header("RAck", "9" * 5000 + " 1 INVITE"), "RAck"),
    ("Retry-After huge", with_header("Retry-After", "9" * 50), "Retry-After"),
    ("Timestamp huge", with_header("Timestamp", "1" * 100 + ".2"), "Timestamp"),
    ("Timestamp not a number", with_header("Timestamp", "soon"), "Timestamp"),
    ("Call-ID with a space", with_header("Call-ID", "two words"), "Call-ID"),
    ("two Call-IDs", invite("Call-ID: another"), "Call-ID"),
    ("two Content-Lengths", invite("Content-Length: 5"), "Content-Length"),
    ("Content-Length of 4400 digits", with_header("Content-Length", "9" * 4400), "Content-Length"),
]


@pytest.mark.parametrize(
    ("data", "reason"), [case[1:] for case in BAD_REQUESTS], ids=[c[0] for c in BAD_REQUESTS]
)
def test_bad_header_is_a_400_with_the_reason(data: bytes, reason: str) -> None:
    error = rejected(data)
    assert reason in error.reason, error.reason
    assert error.status == 400
    assert error.partial is not None, "an answerable request must keep its partial for the 400"
    response = make_response(error.partial, 400, f"Bad Request ({error.reason})")
    assert response.to_bytes().startswith(b"SIP/2.0 400 Bad Request (")


GOOD_VALUES = [
    ("Max-Forwards", "0"),
    ("Max-Forwards", "255"),
    ("Expires", "0"),
    ("Expires", "4294967296"),
    ("Session-Expires", "1800;refresher=uac"),
    ("Session-Expires", "1800 ; refresher=uas"),
    ("Min-SE", "90"),
    ("Retry-After", "120 (in a meeting);duration=60"),
    ("RSeq", "988789"),
    ("RAck", "776656 1 INVITE"),
    ("Timestamp", "54"),
    ("Timestamp", "54.21 0.3"),
    ("Record-Route", "<sip:p1.example.com;lr>, <sip:[2001:db8::1]:5070;lr>"),
    ("Route", "<sip:198.51.100.1;lr>"),
    ("Contact", '"Doe, J" <sip:j@example.com:5062;transport=tcp>;expires=60'),
    ("Contact", "sip:plain@host-1.example.org"),
]


@pytest.mark.parametrize(
    ("header", "value"), GOOD_VALUES, ids=[f"{h}: {v}" for h, v in GOOD_VALUES]
)
def test_good_values_still_parse(header: str, value: str) -> None:
    message = parse_message(with_header(header, value))
    assert isinstance(message, SipRequest)
    assert message.headers.get(header) == value


def test_star_contact_is_fine_in_register() -> None:
    data = (
        invite(contact="*")
        .replace(b"INVITE sip:", b"REGISTER sip:")
        .replace(b"CSeq: 1 INVITE", b"CSeq: 1 REGISTER")
    )
    message = parse_message(data + b"")
    assert isinstance(message, SipRequest)
    assert message.method == "REGISTER"


def test_max_forwards_property_is_a_number() -> None:
    message = parse_message(with_header("Max-Forwards", "7"))
    assert message.max_forwards == 7
    assert parse_message(invite()).max_forwards == 70


def test_a_response_with_a_bad_contact_is_dropped_not_answered() -> None:
    data = (
        b"SIP/2.0 200 OK\r\n"
        b"Via: SIP/2.0/UDP 192.0.2.1:5060;branch=z9hG4bKr1\r\n"
        b"From: <sip:agent@192.0.2.1>;tag=ours\r\n"
        b"To: <sip:x@192.0.2.10>;tag=theirs\r\n"
        b"Call-ID: r1\r\n"
        b"CSeq: 1 INVITE\r\n"
        b"Contact: <sip:x@192.0.2.10:0x10>\r\n"
        b"Content-Length: 0\r\n\r\n"
    )
    error = rejected(data)
    assert "Contact" in error.reason
    assert error.partial is None


def test_what_the_parser_accepts_makes_a_dialog() -> None:
    """The dialog reads Contact and Record-Route again: whatever passed must not raise."""
    data = with_header("Record-Route", "<sip:p1.example.com;lr>, <sip:198.51.100.1>")
    message = parse_message(data)
    assert isinstance(message, SipRequest)
    dialog = Dialog.for_uas(message, "local", "sip:agent@192.0.2.1:5060", "UDP")
    assert dialog.remote_target == "sip:caller@192.0.2.10:5062"
    assert dialog.next_hop_uri() == "sip:p1.example.com;lr"


def test_display_names_survive_being_written_back() -> None:
    """Our To (with its new tag) must parse at the far end whatever display name came in."""
    for display in ('a"b', "back\\slash", "Bob Smith", '"quoted \\" one"'):
        data = with_header("To", f"{display} <sip:agent@192.0.2.1>")
        message = parse_message(data)
        assert isinstance(message, SipRequest)
        response = make_response(message, 200, to_tag="t1")
        again = parse_message(response.to_bytes())
        assert NameAddr.parse(again.headers.get("To") or "").tag == "t1"
