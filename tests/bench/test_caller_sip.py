"""The bench caller's SIP dialog against responses an agent sends."""

from __future__ import annotations

from telephony_agent.bench.caller_sip import CallerDialog
from telephony_agent.sip.message import SipRequest, SipResponse
from telephony_agent.sip.parser import parse_message
from telephony_agent.sip.sdp import negotiate_answer, parse_sdp


def _dialog() -> CallerDialog:
    return CallerDialog(
        user="bench-4",
        target=("127.0.0.1", 5070),
        local_sip=("127.0.0.1", 40000),
        rtp_port=40002,
        codec_name="PCMU",
    )


def _reply(request: SipRequest, status: int, body: bytes = b"") -> SipResponse:
    response = SipResponse(status, "X")
    for name in ("Via", "From", "Call-ID", "CSeq"):
        response.headers.add(name, request.headers.get(name) or "")
    response.headers.add("To", (request.headers.get("To") or "") + ";tag=agent1")
    response.headers.add("Contact", "<sip:agent@127.0.0.1:5070;transport=udp>")
    if body:
        response.headers.add("Content-Type", "application/sdp")
    response.body = body
    return parse_message(response.to_bytes())  # type: ignore[return-value]


def _state(dialog: CallerDialog) -> str:
    """Read afresh (a literal compared once is not narrowed for good)."""
    return dialog.state


def test_an_answered_call_is_acked_and_knows_where_to_send_media() -> None:
    dialog = _dialog()
    invite = parse_message(dialog.invite())
    assert isinstance(invite, SipRequest) and invite.method == "INVITE"
    assert "sip:bench-4@127.0.0.1" in (invite.headers.get("From") or "")
    agreed = negotiate_answer(
        parse_sdp(invite.body),
        local_address="127.0.0.1",
        local_port=30000,
        session_id=1,
        session_version=1,
    )
    assert dialog.on_response(_reply(invite, 180)) == []
    assert dialog.provisional and _state(dialog) == "calling"
    [ack] = dialog.on_response(_reply(invite, 200, agreed.answer.to_bytes()))
    assert _state(dialog) == "answered" and dialog.status == 200
    assert dialog.media is not None
    assert dialog.media.remote == ("127.0.0.1", 30000)
    assert dialog.media.payload_type == 0
    parsed = parse_message(ack)
    assert isinstance(parsed, SipRequest) and parsed.method == "ACK"
    assert parsed.uri == "sip:agent@127.0.0.1:5070;transport=udp"
    assert "tag=agent1" in (parsed.headers.get("To") or "")
    # A retransmitted 200 is ACKed again; the call stays answered.
    assert len(dialog.on_response(_reply(invite, 200, agreed.answer.to_bytes()))) == 1
    bye = parse_message(dialog.bye())
    assert isinstance(bye, SipRequest) and bye.method == "BYE" and bye.cseq == (2, "BYE")
    dialog.on_response(_reply(bye, 200))
    assert _state(dialog) == "ended"


def test_a_refusal_is_acked_in_its_transaction_and_remembered() -> None:
    dialog = _dialog()
    invite = parse_message(dialog.invite())
    assert isinstance(invite, SipRequest)
    [ack] = dialog.on_response(_reply(invite, 503))
    assert (dialog.state, dialog.status) == ("refused", 503)
    parsed = parse_message(ack)
    assert isinstance(parsed, SipRequest)
    assert parsed.headers.get("Via") == invite.headers.get("Via")  # same branch


def test_a_bye_from_the_agent_ends_the_call_with_a_200() -> None:
    dialog = _dialog()
    request = SipRequest("BYE", "sip:bench-4@127.0.0.1:40000")
    for name, value in (
        ("Via", "SIP/2.0/UDP 127.0.0.1:5070;branch=z9hG4bKx"),
        ("From", "<sip:agent@127.0.0.1>;tag=a"),
        ("To", "<sip:bench-4@127.0.0.1>;tag=b"),
        ("Call-ID", dialog.call_id),
        ("CSeq", "7 BYE"),
    ):
        request.headers.add(name, value)
    response = parse_message(dialog.answer(request))
    assert isinstance(response, SipResponse)
    assert response.status == 200 and response.cseq == (7, "BYE")
    assert dialog.state == "ended"
