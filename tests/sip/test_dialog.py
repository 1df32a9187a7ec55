"""Responses built from requests (§8.2.6) and dialog state on both sides of a call (§12)."""

from __future__ import annotations

import pytest

from telephony_agent.sip.dialog import (
    Dialog,
    DialogError,
    make_response,
    new_tag,
    peer_for_uri,
)
from telephony_agent.sip.message import (
    Headers,
    NameAddr,
    SipRequest,
    SipResponse,
    SipUri,
    Via,
)
from telephony_agent.sip.parser import parse_message
from telephony_agent.sip.transaction import Peer

INVITE_BYTES = (
    b"INVITE sip:agent@203.0.113.10:5060 SIP/2.0\r\n"
    b"Via: SIP/2.0/UDP p1.example.com;branch=z9hG4bKp1;received=198.51.100.1\r\n"
    b"Via: SIP/2.0/UDP uac.example.com:5070;branch=z9hG4bKuac;rport=5070\r\n"
    b"Record-Route: <sip:p1.example.com;lr>, <sip:p2.example.com;lr;ftag=abc>\r\n"
    b"Max-Forwards: 69\r\n"
    b'From: "Caller" <sip:+15559870000@carrier.example>;tag=caller-tag\r\n'
    b"To: <sip:agent@203.0.113.10>\r\n"
    b"Call-ID: dialog-call-1\r\n"
    b"CSeq: 314 INVITE\r\n"
    b"Contact: <sip:caller@198.51.100.30:5070;transport=udp>\r\n"
    b"Timestamp: 54.2\r\n"
    b"Content-Length: 0\r\n"
    b"\r\n"
)


def parsed_request(data: bytes) -> SipRequest:
    message = parse_message(data)
    assert isinstance(message, SipRequest)
    return message


def parsed_response(data: bytes) -> SipResponse:
    message = parse_message(data)
    assert isinstance(message, SipResponse)
    return message


@pytest.fixture
def invite() -> SipRequest:
    return parsed_request(INVITE_BYTES)


# ---------------------------------------------------------------------- make_response


def test_response_copies_the_transaction_headers(invite: SipRequest) -> None:
    ok = make_response(invite, 200, to_tag="agent-tag")
    assert (ok.status, ok.reason) == (200, "OK")
    assert ok.headers.get_all("Via") == invite.headers.get_all("Via")
    assert ok.headers.get("From") == invite.headers.get("From")
    assert ok.headers.get("Call-ID") == "dialog-call-1"
    assert ok.headers.get("CSeq") == "314 INVITE"
    to = NameAddr.parse(ok.headers.get("To") or "")
    assert (to.uri, to.tag) == ("sip:agent@203.0.113.10", "agent-tag")
    # It is a valid message on the wire.
    again = parsed_response(ok.to_bytes())
    assert again.cseq == (314, "INVITE") and again.top_via.branch == "z9hG4bKp1"


def test_100_trying_has_no_tag_no_record_route_and_echoes_timestamp(invite: SipRequest) -> None:
    trying = make_response(invite, 100, to_tag="agent-tag")
    assert trying.reason == "Trying"
    assert NameAddr.parse(trying.headers.get("To") or "").tag is None
    assert trying.headers.get("Record-Route") is None
    assert trying.headers.get("Timestamp") == "54.2"  # §8.2.6.1
    assert make_response(invite, 180, to_tag="t").headers.get("Timestamp") is None


def test_record_route_copied_into_2xx_in_order(invite: SipRequest) -> None:
    ok = make_response(invite, 200, to_tag="agent-tag")
    assert ok.headers.get_all("Record-Route") == [
        "<sip:p1.example.com;lr>",
        "<sip:p2.example.com;lr;ftag=abc>",
    ]


def test_record_route_copied_into_early_dialog_provisional(invite: SipRequest) -> None:
    # §12.1: a 101-199 with a To tag establishes an early dialog, so it carries them too.
    ringing = make_response(invite, 180, to_tag="agent-tag")
    assert ringing.headers.get_all("Record-Route") == invite.headers.get_all("Record-Route")
    assert make_response(invite, 100).headers.get("Record-Route") is None


@pytest.mark.parametrize("status", [180, 183, 200, 400, 404, 481, 486, 500, 503])
def test_every_response_but_100_has_a_to_tag_even_without_a_dialog(
    invite: SipRequest, status: int
) -> None:
    # §8.2.6.2: OPTIONS answered outside any dialog, a 400, a 486 before any call exists.
    response = make_response(invite, status)
    tag = NameAddr.parse(response.headers.get("To") or "").tag
    assert tag
    assert NameAddr.parse(make_response(invite, status).headers.get("To") or "").tag != tag
    assert NameAddr.parse(make_response(invite, 100).headers.get("To") or "").tag is None


@pytest.mark.parametrize("status", [300, 404, 486, 500, 603])
def test_record_route_not_copied_into_failures(invite: SipRequest, status: int) -> None:
    assert make_response(invite, status, to_tag="x").headers.get("Record-Route") is None


def test_existing_to_tag_is_kept(invite: SipRequest) -> None:
    invite.headers.set("To", "<sip:agent@203.0.113.10>;tag=established")
    ok = make_response(invite, 200, to_tag="other")
    assert NameAddr.parse(ok.headers.get("To") or "").tag == "established"


def test_response_reason_extra_headers_and_body(invite: SipRequest) -> None:
    extra = Headers([("Contact", "<sip:agent@203.0.113.10>"), ("Allow", "INVITE, BYE")])
    ok = make_response(
        invite, 200, "Fine", to_tag="t", headers=extra, body=b"v=0\r\n", content_type="a/b"
    )
    assert ok.reason == "Fine"
    assert ok.headers.get("Contact") == "<sip:agent@203.0.113.10>"
    assert ok.headers.get("Content-Type") == "a/b"
    assert parsed_response(ok.to_bytes()).body == b"v=0\r\n"
    assert make_response(invite, 599).reason == "Unknown"
    assert make_response(invite, 200, body=b"x").headers.get("Content-Type") is None


def test_response_to_a_request_with_a_malformed_to_is_still_possible(invite: SipRequest) -> None:
    invite.headers.set("To", "<sip:unterminated")
    bad = make_response(invite, 400, "Bad Request")
    assert bad.headers.get("To") == "<sip:unterminated"


def test_new_tags_are_distinct() -> None:
    assert len({new_tag() for _ in range(100)}) == 100


@pytest.mark.parametrize(
    ("uri", "transport", "peer"),
    [
        ("sip:bob@192.0.2.1", "UDP", Peer("UDP", "192.0.2.1", 5060)),
        ("sip:bob@192.0.2.1:5070;transport=tcp", "UDP", Peer("TCP", "192.0.2.1", 5070)),
        ("sip:[2001:db8::1]:5080", "TCP", Peer("TCP", "2001:db8::1", 5080)),
    ],
)
def test_peer_for_uri(uri: str, transport: str, peer: Peer) -> None:
    assert peer_for_uri(uri, transport) == peer


# ---------------------------------------------------------------------- UAS dialog


def test_uas_dialog_from_invite(invite: SipRequest) -> None:
    dialog = Dialog.for_uas(invite, "agent-tag", "sip:agent@203.0.113.10:5060", "UDP")
    assert dialog.call_id == "dialog-call-1"
    assert (dialog.local_tag, dialog.remote_tag) == ("agent-tag", "caller-tag")
    assert dialog.local_uri == "sip:agent@203.0.113.10"
    assert dialog.remote_uri == "sip:+15559870000@carrier.example"
    assert dialog.remote_target == "sip:caller@198.51.100.30:5070;transport=udp"
    assert dialog.remote_seq == 314
    # §12.1.1: the UAS keeps Record-Route in order.
    assert dialog.route_set == ["<sip:p1.example.com;lr>", "<sip:p2.example.com;lr;ftag=abc>"]
    assert dialog.key == ("dialog-call-1", "agent-tag", "caller-tag")
    assert 1 <= dialog.local_seq <= 2**16


def test_uas_without_contact_targets_the_from_uri(invite: SipRequest) -> None:
    invite.headers.remove("Contact")
    dialog = Dialog.for_uas(invite, "t", "sip:agent@203.0.113.10", "UDP")
    assert dialog.remote_target == "sip:+15559870000@carrier.example"


def test_uas_bye_goes_through_the_route_set(invite: SipRequest) -> None:
    dialog = Dialog.for_uas(invite, "agent-tag", "sip:agent@203.0.113.10:5060", "UDP")
    first_seq = dialog.local_seq
    bye = dialog.create_request("BYE", "203.0.113.10", 5060)
    assert bye.uri == dialog.remote_target  # loose routing: Request-URI is the target
    assert bye.headers.get_all("Route") == dialog.route_set
    assert dialog.next_hop_uri() == "sip:p1.example.com;lr"
    from_addr = NameAddr.parse(bye.headers.get("From") or "")
    to_addr = NameAddr.parse(bye.headers.get("To") or "")
    assert (from_addr.uri, from_addr.tag) == ("sip:agent@203.0.113.10", "agent-tag")
    assert (to_addr.uri, to_addr.tag) == ("sip:+15559870000@carrier.example", "caller-tag")
    assert bye.cseq == (first_seq + 1, "BYE")
    assert bye.call_id == "dialog-call-1"
    assert bye.headers.get("Contact") is None
    via = bye.top_via
    assert (via.transport, via.host, via.port) == ("UDP", "203.0.113.10", 5060)
    assert (via.branch or "").startswith("z9hG4bK") and "rport" in via.params
    # The request parses as a valid message.
    assert parsed_request(bye.to_bytes()).cseq == bye.cseq


def test_in_dialog_cseq_increments_and_branches_differ(invite: SipRequest) -> None:
    dialog = Dialog.for_uas(invite, "agent-tag", "sip:agent@203.0.113.10", "UDP")
    refer = dialog.create_request("REFER", "h", 5060, extra=Headers([("Refer-To", "<sip:x@y>")]))
    info = dialog.create_request("INFO", "h", 5060, body=b"Signal=1", content_type="a/dtmf")
    reinvite = dialog.create_request("INVITE", "h", 5060)
    seqs = [r.cseq[0] for r in (refer, info, reinvite)]
    assert seqs == [seqs[0], seqs[0] + 1, seqs[0] + 2]
    assert len({r.top_via.branch for r in (refer, info, reinvite)}) == 3
    assert refer.headers.get("Refer-To") == "<sip:x@y>"
    assert refer.headers.get("Contact") == "<sip:agent@203.0.113.10>"
    assert reinvite.headers.get("Contact") == "<sip:agent@203.0.113.10>"
    assert info.headers.get("Content-Type") == "a/dtmf" and info.body == b"Signal=1"


def test_check_remote_cseq(invite: SipRequest) -> None:
    dialog = Dialog.for_uas(invite, "agent-tag", "sip:agent@203.0.113.10", "UDP")

    def incoming(method: str, seq: int) -> SipRequest:
        headers = Headers([("CSeq", f"{seq} {method}")])
        return SipRequest(method, "sip:agent@203.0.113.10", headers)

    dialog.check_remote_cseq(incoming("INFO", 315))
    assert dialog.remote_seq == 315
    dialog.check_remote_cseq(incoming("INFO", 315))  # equal is not "lower" (§12.2.2)
    with pytest.raises(DialogError, match="lower"):
        dialog.check_remote_cseq(incoming("BYE", 314))
    assert dialog.remote_seq == 315
    # ACK and CANCEL carry an earlier request's number and are never out of order.
    dialog.check_remote_cseq(incoming("ACK", 1))
    dialog.check_remote_cseq(incoming("CANCEL", 2))
    assert dialog.remote_seq == 315
    dialog.check_remote_cseq(incoming("BYE", 1000))
    assert dialog.remote_seq == 1000


def test_first_remote_cseq_is_accepted_when_empty() -> None:
    dialog = Dialog("c", "l", "r", "sip:l@x", "sip:r@y", "sip:r@y", "sip:l@x", 1)
    dialog.check_remote_cseq(SipRequest("BYE", "sip:l@x", Headers([("CSeq", "7 BYE")])))
    assert dialog.remote_seq == 7


# ---------------------------------------------------------------------- UAC dialog


OUR_INVITE = (
    b"INVITE sip:+15559870000@carrier.example SIP/2.0\r\n"
    b"Via: SIP/2.0/UDP 203.0.113.10:5060;branch=z9hG4bKours;rport\r\n"
    b"Max-Forwards: 70\r\n"
    b"From: <sip:agent@203.0.113.10>;tag=our-tag\r\n"
    b"To: <sip:+15559870000@carrier.example>\r\n"
    b"Call-ID: out-call-1\r\n"
    b"CSeq: 20 INVITE\r\n"
    b"Contact: <sip:agent@203.0.113.10:5060>\r\n"
    b"Content-Length: 0\r\n"
    b"\r\n"
)

THEIR_200 = (
    b"SIP/2.0 200 OK\r\n"
    b"Via: SIP/2.0/UDP 203.0.113.10:5060;branch=z9hG4bKours;rport=5060\r\n"
    b"Record-Route: <sip:edge2.carrier.example;lr>\r\n"
    b"Record-Route: <sip:edge1.carrier.example;lr>\r\n"
    b"From: <sip:agent@203.0.113.10>;tag=our-tag\r\n"
    b"To: <sip:+15559870000@carrier.example>;tag=their-tag\r\n"
    b"Call-ID: out-call-1\r\n"
    b"CSeq: 20 INVITE\r\n"
    b"Contact: <sip:callee@198.51.100.40:5062>\r\n"
    b"Content-Length: 0\r\n"
    b"\r\n"
)


def test_uac_dialog_from_2xx() -> None:
    dialog = Dialog.for_uac(parsed_request(OUR_INVITE), parsed_response(THEIR_200), "UDP")
    assert (dialog.local_tag, dialog.remote_tag) == ("our-tag", "their-tag")
    assert dialog.local_uri == "sip:agent@203.0.113.10"
    assert dialog.remote_uri == "sip:+15559870000@carrier.example"
    assert dialog.remote_target == "sip:callee@198.51.100.40:5062"
    assert dialog.local_contact == "sip:agent@203.0.113.10:5060"
    assert dialog.local_seq == 20
    assert dialog.remote_seq is None
    # §12.1.2: the UAC reverses Record-Route.
    assert dialog.route_set == [
        "<sip:edge1.carrier.example;lr>",
        "<sip:edge2.carrier.example;lr>",
    ]


def test_uac_ack_for_2xx_reuses_the_invite_cseq() -> None:
    dialog = Dialog.for_uac(parsed_request(OUR_INVITE), parsed_response(THEIR_200), "UDP")
    ack = dialog.create_ack(20, "203.0.113.10", 5060)
    assert ack.method == "ACK"
    assert ack.cseq == (20, "ACK")
    assert ack.uri == "sip:callee@198.51.100.40:5062"
    assert ack.headers.get_all("Route") == dialog.route_set
    assert ack.top_via.branch != "z9hG4bKours"  # the 2xx's ACK is a new transaction
    assert NameAddr.parse(ack.headers.get("To") or "").tag == "their-tag"
    assert dialog.local_seq == 20  # the ACK does not consume a sequence number
    bye = dialog.create_request("BYE", "203.0.113.10", 5060)
    assert bye.cseq == (21, "BYE")


def test_uac_without_contact_or_record_route() -> None:
    invite = parsed_request(OUR_INVITE.replace(b"Contact: <sip:agent@203.0.113.10:5060>\r\n", b""))
    ok = parsed_response(
        THEIR_200.replace(b"Contact: <sip:callee@198.51.100.40:5062>\r\n", b"")
        .replace(b"Record-Route: <sip:edge2.carrier.example;lr>\r\n", b"")
        .replace(b"Record-Route: <sip:edge1.carrier.example;lr>\r\n", b"")
    )
    dialog = Dialog.for_uac(invite, ok, "TCP")
    assert dialog.remote_target == invite.uri
    assert dialog.local_contact == "sip:agent@203.0.113.10"
    assert dialog.route_set == []
    bye = dialog.create_request("BYE", "203.0.113.10", 5060)
    assert bye.headers.get("Route") is None
    assert bye.uri == invite.uri
    assert bye.top_via.transport == "TCP"
    assert dialog.next_hop_uri() == invite.uri


# ---------------------------------------------------------------------- strict routing


def test_strict_router_becomes_the_request_uri() -> None:
    # §12.2.1.1: first route without lr -> it is the Request-URI; the remote target is
    # appended as the last Route.
    dialog = Dialog(
        call_id="c",
        local_tag="l",
        remote_tag="r",
        local_uri="sip:l@example.com",
        remote_uri="sip:r@example.com",
        remote_target="sip:r@192.0.2.50:5060",
        local_contact="sip:l@192.0.2.1",
        local_seq=1,
        route_set=["<sip:strict.example.com;maddr=192.0.2.9>", "<sip:loose.example.com;lr>"],
    )
    bye = dialog.create_request("BYE", "192.0.2.1", 5060)
    assert bye.uri == "sip:strict.example.com;maddr=192.0.2.9"
    assert bye.headers.get_all("Route") == [
        "<sip:loose.example.com;lr>",
        "<sip:r@192.0.2.50:5060>",
    ]
    assert dialog.next_hop_uri() == "sip:strict.example.com;maddr=192.0.2.9"
    assert SipUri.parse(bye.uri).host == "strict.example.com"
    assert parsed_request(bye.to_bytes()).uri == bye.uri


def test_in_dialog_request_without_remote_tag_has_none() -> None:
    dialog = Dialog("c", "l", None, "sip:l@x", "sip:r@y", "sip:r@y", "sip:l@x", 5)
    cancel_like = dialog.create_request("UPDATE", "x", 5060)
    assert NameAddr.parse(cancel_like.headers.get("To") or "").tag is None
    assert Via.parse(cancel_like.headers.get_all("Via")[0]).host == "x"
    assert dialog.key == ("c", "l", "")
