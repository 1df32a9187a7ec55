"""Checks on a browser's SDP offer before aiortc sees it.

Why our own checks first: aiortc's messages for a bad offer are either
misleading ("Failed to set remote audio description send parameters" for an
offer without Opus) or absent (a page of garbage parses as an SDP with no
media and yields an answer with no audio at all). The signalling layer turns
:class:`WebRtcOfferError` into a 400 with the message, so the message must tell
the page's author what is wrong with the offer. The checks are deliberately
shallow: structure, an audio m-line, Opus on it. Everything deeper (ICE
credentials, DTLS fingerprint) is aiortc's job; its errors are wrapped into
the same exception by the leg.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

__all__ = ["MAX_OFFER_BYTES", "AudioOffer", "WebRtcOfferError", "check_offer"]

#: A browser's offer with audio, video and data is 3-8 KiB; far more is not an offer.
MAX_OFFER_BYTES = 64 * 1024

_LINE = re.compile(r"^[a-z]=")
_RTPMAP = re.compile(r"^a=rtpmap:(\d+)\s+([^/\s]+)/(\d+)", re.IGNORECASE)


class WebRtcOfferError(ValueError):
    """The offer cannot be answered; the message says why, for the HTTP response."""


@dataclass(frozen=True)
class AudioOffer:
    """What the checks found out about the offer's first usable audio m-line."""

    #: Payload type of Opus in the offer.
    opus_payload_type: int
    #: Every codec offered on that m-line, "name/rate", for logs.
    codecs: tuple[str, ...]
    #: Labels of the m-lines in order ("audio", "video", "application").
    media: tuple[str, ...]


def check_offer(offer_sdp: object) -> AudioOffer:
    """Validate the shape of an SDP offer; raise :class:`WebRtcOfferError` if unusable."""
    if not isinstance(offer_sdp, str):
        raise WebRtcOfferError(f"the offer must be SDP text, got {type(offer_sdp).__name__}")
    if len(offer_sdp.encode("utf-8", "replace")) > MAX_OFFER_BYTES:
        raise WebRtcOfferError(f"the offer is larger than {MAX_OFFER_BYTES} bytes")
    lines = [line.strip() for line in offer_sdp.strip().splitlines()]
    lines = [line for line in lines if line]
    if not lines or not lines[0].startswith("v="):
        raise WebRtcOfferError("the offer is not SDP: it must start with a 'v=0' line")
    for number, line in enumerate(lines, start=1):
        if not _LINE.match(line):
            raise WebRtcOfferError(
                f"the offer is not parseable SDP: line {number} is not '<letter>=<value>': "
                f"{line[:60]!r}"
            )
    sections = _media_sections(lines)
    media = tuple(kind for kind, _, _ in sections)
    if not sections:
        raise WebRtcOfferError("the offer has no media (m=) lines; it needs an audio m-line")
    audio = [(header, body) for kind, header, body in sections if kind == "audio"]
    if not audio:
        raise WebRtcOfferError(
            f"the offer has no audio m-line (it offers {', '.join(media)}); "
            "add a microphone track or an audio transceiver"
        )
    offered: list[str] = []
    for header, body in audio:
        formats = header.split()[3:]
        port = header.split()[1] if len(header.split()) > 1 else "0"
        if port == "0" and "a=bundle-only" not in body:
            continue  # a rejected or disabled m-line (bundle-only ones ride on another port)
        codecs = _rtpmaps(body, formats)
        offered += [f"{name}/{rate}" for name, rate in codecs.values()]
        for pt, (name, rate) in codecs.items():
            if name.lower() == "opus" and rate == 48000:
                return AudioOffer(pt, tuple(f"{n}/{r}" for n, r in codecs.values()), media)
    listed = ", ".join(offered) if offered else "none"
    raise WebRtcOfferError(
        f"no usable audio codec in the offer: Opus 48000 is required (offered: {listed})"
    )


def _media_sections(lines: list[str]) -> list[tuple[str, str, list[str]]]:
    """(kind, m-line, attribute lines) for each m= section."""
    sections: list[tuple[str, str, list[str]]] = []
    for line in lines:
        if line.startswith("m="):
            kind = line[2:].split(" ", 1)[0].lower()
            sections.append((kind, line[2:], []))
        elif sections:
            sections[-1][2].append(line)
    return sections


def _rtpmaps(body: list[str], formats: list[str]) -> dict[int, tuple[str, int]]:
    """Payload type -> (encoding name, clock rate) for the formats listed on the m-line."""
    listed = set(formats)
    codecs: dict[int, tuple[str, int]] = {}
    for line in body:
        match = _RTPMAP.match(line)
        if match is not None and match.group(1) in listed:
            codecs[int(match.group(1))] = (match.group(2), int(match.group(3)))
    return codecs
