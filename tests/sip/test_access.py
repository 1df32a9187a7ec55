"""Inbound access control: the allowlist, device digest auth, and bans for guessers."""

from __future__ import annotations

import pytest

from telephony_agent.errors import ConfigError
from telephony_agent.sip.access import AccessList, FailureBans, parse_networks
from telephony_agent.sip.digest import DigestClient, DigestCredentials, choose_challenge
from telephony_agent.sip.digest_server import DigestVerifier


def _answer(verifier: DigestVerifier, user: str, password: str, now: float) -> str:
    client = DigestClient(DigestCredentials(user, password))
    client.accept(choose_challenge(verifier.challenges(now)))
    answer = client.authorization("INVITE", "sip:agent@192.0.2.1")
    assert answer is not None
    return answer[1]


def test_allowlist_of_networks() -> None:
    access = AccessList(parse_networks(["203.0.113.0/24", "2001:db8::1"], "sip.allow"))
    assert access.allows("203.0.113.77") and access.allows("2001:db8::1")
    assert not access.allows("198.51.100.1") and not access.allows("not-an-address")
    assert access.denied == 2
    assert AccessList().allows("198.51.100.1")
    with pytest.raises(ConfigError, match=r"sip.allow = '10.0.0.0/33': expected an address"):
        parse_networks(["10.0.0.0/33"], "sip.allow")


def test_our_client_passes_our_verifier_with_either_algorithm() -> None:
    verifier = DigestVerifier("agent", {"desk1": "pw1"})
    assert verifier.challenges(0.0)[0].split("algorithm=")[1] == "SHA-256"
    header = _answer(verifier, "desk1", "pw1", 0.0)
    assert "algorithm=SHA-256" in header
    assert verifier.verify("INVITE", header, 1.0).ok
    md5_client = DigestClient(DigestCredentials("desk1", "pw1"))
    md5_client.accept(choose_challenge([verifier.challenges(0.0)[1]]))
    md5 = md5_client.authorization("INVITE", "sip:agent@192.0.2.1")
    assert md5 is not None and verifier.verify("INVITE", md5[1], 1.0).ok


def test_wrong_password_and_unknown_user_look_the_same() -> None:
    verifier = DigestVerifier("agent", {"desk1": "pw1"})
    wrong = verifier.verify("INVITE", _answer(verifier, "desk1", "nope", 0.0), 1.0)
    unknown = verifier.verify("INVITE", _answer(verifier, "nobody", "pw1", 0.0), 1.0)
    assert wrong == unknown
    assert not wrong.ok and wrong.username is None


def test_expired_nonces_are_stale_and_forged_ones_fail() -> None:
    verifier = DigestVerifier("agent", {"desk1": "pw1"}, nonce_ttl_s=300)
    header = _answer(verifier, "desk1", "pw1", 0.0)
    result = verifier.verify("INVITE", header, 301.0)
    assert (result.ok, result.stale) == (False, True)
    other = DigestVerifier("agent", {"desk1": "pw1"})  # another secret: not our nonce
    assert not verifier.verify("INVITE", _answer(other, "desk1", "pw1", 0.0), 1.0).ok
    assert not verifier.verify("INVITE", "Basic ZGVzazE6cHcx", 1.0).ok
    assert not verifier.verify("INVITE", 'Digest username="desk1", nonce="x', 1.0).ok
    assert not verifier.verify("INVITE", None, 1.0).ok
    assert not verifier.verify("BYE", header, 1.0).ok  # signed for INVITE


def test_bans_after_repeated_failures_then_expire() -> None:
    bans = FailureBans(max_failures=3, window_s=60, ban_s=600)
    assert not bans.failed("198.51.100.9", 0.0)
    assert not bans.failed("198.51.100.9", 1.0)
    assert bans.failed("198.51.100.9", 2.0)
    assert bans.is_banned("198.51.100.9", 100.0) and not bans.is_banned("198.51.100.8", 100.0)
    assert not bans.is_banned("198.51.100.9", 603.0)
    # Failures spread wider than the window never add up to a ban.
    for minute in range(10):
        assert not bans.failed("198.51.100.7", minute * 61.0)
    bans.succeeded("198.51.100.7")
    assert bans.bans == 1 and bans.refused == 1


def test_ban_memory_is_bounded() -> None:
    bans = FailureBans(max_sources=100)
    for index in range(1000):
        bans.failed(f"10.0.{index // 256}.{index % 256}", 0.0)
    assert len(bans) == 100
