"""SDES-SRTP on top of plain SDP negotiation: `RTP/SAVP` m-lines with `a=crypto`.

Why a wrapper and not more of `sdp.py`: what SRTP changes is narrow — the profile name
(`RTP/SAVP` for `RTP/AVP`, `RTP/SAVPF` for `RTP/AVPF`) and one crypto line each way —
while codec choice, directions and addresses are exactly as for plain RTP. So the
offer is viewed as plain, negotiated by the one negotiator, and the answer dressed
back as secure with our own key.

Policy (`[rtp] srtp`): `off` answers only plain offers; `optional` answers SAVP
offers with SRTP and plain ones in the clear, and offers plain RTP (offering SAVP to a
peer without SRTP would be refused outright); `required` answers only SAVP offers
(488 otherwise) and offers SAVP.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Literal

from telephony_agent.sip.sdes import CryptoLine, SdesError, answer_crypto, new_crypto, parse_crypto
from telephony_agent.sip.sdp import (
    Attribute,
    MediaDescription,
    Negotiated,
    SdpError,
    SessionDescription,
    accept_answer,
    negotiate_answer,
)

__all__ = ["SecureAnswer", "SrtpMode", "accept_secure", "answer_secure", "offer_secure"]

SrtpMode = Literal["off", "optional", "required"]
_SECURE = {"RTP/SAVP": "RTP/AVP", "RTP/SAVPF": "RTP/AVPF"}
_PLAIN = {plain: secure for secure, plain in _SECURE.items()}


class SecureAnswer:
    """A negotiation result and, when SRTP was agreed, (our key, their key)."""

    def __init__(self, negotiated: Negotiated, keys: tuple[CryptoLine, CryptoLine] | None):
        self.negotiated = negotiated
        self.keys = keys


def answer_secure(
    offer: SessionDescription,
    mode: SrtpMode,
    *,
    local_address: str,
    local_port: int,
    codec_preference: tuple[str, ...] | list[str],
    session_id: int,
    session_version: int,
) -> SecureAnswer:
    """Answer `offer` under `mode`; SdpError (→ 488) names why it cannot be answered."""
    secure_index = _first_secure_audio(offer)
    if secure_index is None or mode == "off":
        if mode == "required":
            raise SdpError("SRTP is required here: offer RTP/SAVP with a=crypto")
        plain = negotiate_answer(
            offer,
            local_address=local_address,
            local_port=local_port,
            codec_preference=codec_preference,
            session_id=session_id,
            session_version=session_version,
        )
        return SecureAnswer(plain, None)
    media = offer.media[secure_index]
    try:
        theirs, ours = answer_crypto(a.value or "" for a in media.attributes if a.name == "crypto")
    except SdesError as exc:
        raise SdpError(f"unusable SRTP offer: {exc}") from None
    plain_media = replace(
        media, proto=_SECURE[media.proto.upper()], attributes=_without_crypto(media)
    )
    plain_offer = replace(
        offer,
        media=tuple(plain_media if i == secure_index else m for i, m in enumerate(offer.media)),
    )
    negotiated = negotiate_answer(
        plain_offer,
        local_address=local_address,
        local_port=local_port,
        codec_preference=codec_preference,
        session_id=session_id,
        session_version=session_version,
    )
    answer = _secured(negotiated.answer, negotiated.media_index, ours)
    return SecureAnswer(replace(negotiated, answer=answer), (ours, theirs))


def offer_secure(
    offer: SessionDescription, mode: SrtpMode
) -> tuple[SessionDescription, CryptoLine | None]:
    """Our offer as `mode` wants it: SAVP with a fresh key when SRTP is required."""
    if mode != "required":
        return offer, None
    ours = new_crypto()
    secured = offer
    for index, media in enumerate(offer.media):
        if media.media.lower() == "audio" and media.port != 0:
            secured = _secured(secured, index, ours)
    return secured, ours


def accept_secure(
    offer: SessionDescription, answer: SessionDescription, ours: CryptoLine | None
) -> SecureAnswer:
    """Check the answer to our offer; with SRTP offered, the answer must bring its key."""
    if ours is None:
        return SecureAnswer(accept_answer(offer, answer), None)
    index = _first_secure_audio(answer)
    if index is None:
        raise SdpError("the answer refused SRTP (no RTP/SAVP audio with a=crypto)")
    theirs: CryptoLine | None = None
    for attribute in answer.media[index].attributes:
        if attribute.name != "crypto" or attribute.value is None:
            continue
        try:
            line = parse_crypto(attribute.value)
        except SdesError:
            continue
        if line.tag == ours.tag and line.suite == ours.suite:
            theirs = line
            break
    if theirs is None:
        raise SdpError("the answer's crypto line does not match the suite we offered")
    negotiated = accept_answer(_plain(offer), _plain(answer))
    return SecureAnswer(replace(negotiated, answer=answer), (ours, theirs))


def _first_secure_audio(description: SessionDescription) -> int | None:
    for index, media in enumerate(description.media):
        if (
            media.media.lower() == "audio"
            and media.port != 0
            and media.proto.upper() in _SECURE
            and any(a.name == "crypto" for a in media.attributes)
        ):
            return index
    return None


def _without_crypto(media: MediaDescription) -> tuple[Attribute, ...]:
    return tuple(a for a in media.attributes if a.name != "crypto")


def _secured(description: SessionDescription, index: int, key: CryptoLine) -> SessionDescription:
    media = description.media[index]
    proto = _PLAIN.get(media.proto.upper(), media.proto)
    crypto = Attribute("crypto", key.to_attribute().removeprefix("crypto:"))
    secured = replace(media, proto=proto, attributes=(*_without_crypto(media), crypto))
    return replace(
        description,
        media=tuple(secured if i == index else m for i, m in enumerate(description.media)),
    )


def _plain(description: SessionDescription) -> SessionDescription:
    media = tuple(
        replace(m, proto=_SECURE.get(m.proto.upper(), m.proto), attributes=_without_crypto(m))
        for m in description.media
    )
    return replace(description, media=media)
