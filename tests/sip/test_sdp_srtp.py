"""SDES-SRTP negotiation over the plain SDP negotiator, both directions, every mode."""

from __future__ import annotations

import pytest

from telephony_agent.sip.sdes import new_crypto
from telephony_agent.sip.sdp import SdpError, build_offer, parse_sdp
from telephony_agent.sip.sdp_srtp import accept_secure, answer_secure, offer_secure

KEY = new_crypto(1)


def _offer(proto: str = "RTP/SAVP", crypto: bool = True) -> bytes:
    lines = [
        "v=0",
        "o=- 1 1 IN IP4 192.0.2.5",
        "s=-",
        "c=IN IP4 192.0.2.5",
        "t=0 0",
        f"m=audio 40000 {proto} 0 101",
        "a=rtpmap:0 PCMU/8000",
        "a=rtpmap:101 telephone-event/8000",
    ]
    if crypto:
        lines.append(f"a={KEY.to_attribute()}")
    return ("\r\n".join(lines) + "\r\n").encode()


def _answer(offer: bytes, mode: str) -> object:
    return answer_secure(
        parse_sdp(offer),
        mode,  # type: ignore[arg-type]
        local_address="192.0.2.1",
        local_port=20000,
        codec_preference=("PCMU",),
        session_id=1,
        session_version=1,
    )


def test_a_secure_offer_gets_a_secure_answer_with_our_own_key() -> None:
    result = answer_secure(
        parse_sdp(_offer()),
        "optional",
        local_address="192.0.2.1",
        local_port=20000,
        codec_preference=("PCMU",),
        session_id=1,
        session_version=1,
    )
    assert result.keys is not None
    ours, theirs = result.keys
    assert theirs.key_salt == KEY.key_salt and ours.key_salt != KEY.key_salt
    text = result.negotiated.answer.to_bytes().decode()
    assert "m=audio 20000 RTP/SAVP 0 101" in text
    assert "a=crypto:1 AES_CM_128_HMAC_SHA1_80 inline:" in text
    assert result.negotiated.codec == "PCMU" and result.negotiated.remote_rtp == (
        "192.0.2.5",
        40000,
    )


@pytest.mark.parametrize(
    ("offer", "mode", "secure"),
    [
        (_offer("RTP/AVP", crypto=False), "optional", False),
        (_offer("RTP/AVP", crypto=False), "off", False),
    ],
)
def test_plain_offers_are_answered_in_the_clear_unless_required(
    offer: bytes, mode: str, secure: bool
) -> None:
    result = _answer(offer, mode)
    assert (result.keys is not None) == secure  # type: ignore[attr-defined]


def test_required_refuses_plain_and_off_refuses_secure() -> None:
    with pytest.raises(SdpError, match="SRTP is required"):
        _answer(_offer("RTP/AVP", crypto=False), "required")
    with pytest.raises(SdpError):
        _answer(_offer(), "off")
    bad = _offer().replace(b"AES_CM_128_HMAC_SHA1_80", b"F8_128_HMAC_SHA1_80")
    with pytest.raises(SdpError, match="unusable SRTP offer"):
        _answer(bad, "optional")


def test_our_secure_offer_and_its_answer() -> None:
    plain = build_offer(
        local_address="192.0.2.1",
        local_port=20000,
        codecs=("PCMU",),
        session_id=1,
        session_version=1,
    )
    assert offer_secure(plain, "optional") == (plain, None)
    secured, ours = offer_secure(plain, "required")
    assert ours is not None and "RTP/SAVP" in secured.to_bytes().decode()
    # The far end answers it as our own answering code would.
    far = answer_secure(
        parse_sdp(secured.to_bytes()),
        "required",
        local_address="192.0.2.9",
        local_port=30000,
        codec_preference=("PCMU",),
        session_id=9,
        session_version=1,
    )
    assert far.keys is not None
    result = accept_secure(secured, parse_sdp(far.negotiated.answer.to_bytes()), ours)
    assert result.keys is not None and result.keys[1].key_salt == far.keys[0].key_salt
    with pytest.raises(SdpError, match="refused SRTP"):
        accept_secure(secured, parse_sdp(_offer("RTP/AVP", crypto=False)), ours)
