"""SDES crypto lines and SRTP protection between two ends keyed by them."""

from __future__ import annotations

import base64
import struct

import pytest

from telephony_agent.media.rtp.srtp import SrtpContext
from telephony_agent.sip.sdes import CryptoLine, SdesError, answer_crypto, new_crypto, parse_crypto

KEY = base64.b64encode(bytes(range(30))).decode()


def _rtp(seq: int, payload: bytes = b"\xff" * 160) -> bytes:
    return struct.pack("!BBHII", 0x80, 0, seq, seq * 160, 0x1234) + payload


def test_parse_and_format_round_trip() -> None:
    line = parse_crypto(f"crypto:1 AES_CM_128_HMAC_SHA1_80 inline:{KEY}|2^20")
    assert (line.tag, line.suite, line.key_salt) == (1, "AES_CM_128_HMAC_SHA1_80", bytes(range(30)))
    assert parse_crypto(line.to_attribute()) == line
    assert KEY not in repr(line)


@pytest.mark.parametrize(
    ("value", "message"),
    [
        (f"1 F8_128_HMAC_SHA1_80 inline:{KEY}", "not supported"),
        (f"1 AES_CM_128_HMAC_SHA1_80 inline:{KEY}|2^20|1:4", "MKI"),
        ("1 AES_CM_128_HMAC_SHA1_80 inline:c2hvcnQ=", "expected 30"),
        ("1 AES_CM_128_HMAC_SHA1_80 inline:***", "base64"),
        (f"x AES_CM_128_HMAC_SHA1_80 inline:{KEY}", "not a number"),
        (f"1 AES_CM_128_HMAC_SHA1_80 inline:{KEY} UNENCRYPTED_SRTP", "session parameters"),
        ("1 AES_CM_128_HMAC_SHA1_80", "needs a tag"),
    ],
)
def test_unusable_lines_say_why_without_the_key(value: str, message: str) -> None:
    with pytest.raises(SdesError, match=message) as caught:
        parse_crypto(value)
    assert KEY not in str(caught.value)


def test_answer_picks_the_best_usable_suite_and_brings_a_new_key() -> None:
    theirs, ours = answer_crypto(
        [
            f"1 F8_128_HMAC_SHA1_80 inline:{KEY}",
            f"2 AES_CM_128_HMAC_SHA1_32 inline:{KEY}",
            f"3 AES_CM_128_HMAC_SHA1_80 inline:{KEY}",
        ]
    )
    assert (theirs.tag, ours.tag, ours.suite) == (3, 3, "AES_CM_128_HMAC_SHA1_80")
    assert ours.key_salt != theirs.key_salt and len(ours.key_salt) == 30
    with pytest.raises(SdesError, match="not supported"):
        answer_crypto([f"1 F8_128_HMAC_SHA1_80 inline:{KEY}"])


@pytest.mark.parametrize("suite", ["AES_CM_128_HMAC_SHA1_80", "AES_CM_128_HMAC_SHA1_32"])
def test_two_ends_exchange_protected_packets(suite: str) -> None:
    a_line, b_line = new_crypto(1, suite), new_crypto(1, suite)
    a = SrtpContext(ours=a_line, theirs=b_line)
    b = SrtpContext(ours=b_line, theirs=a_line)
    for seq in range(1, 50):
        packet = _rtp(seq)
        wire = a.protect(packet)
        assert wire != packet and len(wire) == len(packet) + (10 if suite.endswith("80") else 4)
        assert b.unprotect(wire) == packet
    # A tampered packet and a replayed one are dropped and counted.
    wire = a.protect(_rtp(60))
    tampered = wire[:20] + bytes([wire[20] ^ 1]) + wire[21:]
    assert b.unprotect(tampered) is None
    assert b.unprotect(wire) is not None
    assert b.unprotect(wire) is None
    assert b.stats.auth_failures == 2


def test_a_key_mismatch_is_dropped() -> None:
    a = SrtpContext(ours=new_crypto(), theirs=new_crypto())
    b = SrtpContext(ours=new_crypto(), theirs=new_crypto())
    assert b.unprotect(a.protect(_rtp(1))) is None


def test_crypto_line_repr_hides_the_key() -> None:
    line = CryptoLine(1, "AES_CM_128_HMAC_SHA1_80", b"k" * 30)
    assert "kkkk" not in repr(line)
