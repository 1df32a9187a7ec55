"""The gate's rule in isolation: allowlist, device auth, bans, and the exposure warning."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from telephony_agent.config import Settings, load_settings
from telephony_agent.server.gatekeeper import Gatekeeper, exposure_warning
from telephony_agent.sip.digest import DigestClient, DigestCredentials, choose_challenge
from telephony_agent.sip.message import Headers, SipRequest
from telephony_agent.sip.transaction import Peer
from telephony_agent.trunk.devices import DeviceUser
from telephony_agent.trunk.passwords import PasswordSource


def _settings(users: bool = False, **sip: Any) -> Settings:
    settings = load_settings(None, environ={}, overrides={"sip": sip} if sip else None)
    if users:
        source = PasswordSource("sip.users[desk1]", env="PW")
        settings = replace(settings, sip_users=(DeviceUser("desk1", source),))
    return settings


def _invite(authorization: str | None = None) -> SipRequest:
    headers = Headers([("CSeq", "1 INVITE")])
    if authorization:
        headers.add("Authorization", authorization)
    return SipRequest("INVITE", "sip:agent@192.0.2.1", headers)


def test_open_gate_and_the_warning() -> None:
    gate = Gatekeeper(_settings())
    assert gate.check(_invite(), Peer("UDP", "198.51.100.1", 5060), 0.0).passes
    assert "answers anyone" in (exposure_warning(_settings(listen="0.0.0.0:5060"), gate) or "")
    assert exposure_warning(_settings(listen="127.0.0.1:5060"), gate) is None
    closed = Gatekeeper(_settings(allow=["10.0.0.0/8"]))
    assert exposure_warning(_settings(listen="0.0.0.0:5060"), closed) is None


def test_allowlisted_sources_need_no_password_others_do() -> None:
    gate = Gatekeeper(_settings(users=True, allow=["10.0.0.0/8"]), environ={"PW": "secret"})
    assert gate.check(_invite(), Peer("UDP", "10.1.2.3", 5060), 0.0).passes
    verdict = gate.check(_invite(), Peer("UDP", "198.51.100.1", 5060), 0.0)
    assert verdict.status == 401 and len(verdict.challenges) == 2
    client = DigestClient(DigestCredentials("desk1", "secret"))
    client.accept(choose_challenge(list(verdict.challenges)))
    answer = client.authorization("INVITE", "sip:agent@192.0.2.1")
    assert answer is not None
    ok = gate.check(_invite(answer[1]), Peer("UDP", "198.51.100.1", 5060), 1.0)
    assert ok.passes and ok.username == "desk1"


def test_without_users_outsiders_are_refused_as_configured() -> None:
    dropping = Gatekeeper(_settings(allow=["10.0.0.0/8"]))
    assert dropping.check(_invite(), Peer("UDP", "198.51.100.1", 5060), 0.0).status == -1
    answering = Gatekeeper(_settings(allow=["10.0.0.0/8"], deny_action="403"))
    assert answering.check(_invite(), Peer("UDP", "198.51.100.1", 5060), 0.0).status == 403
    assert answering.health()["denied"] == 1
