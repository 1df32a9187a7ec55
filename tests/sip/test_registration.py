"""The registration state machine driven through hours of registrar behaviour."""

from __future__ import annotations

import hashlib

from telephony_agent.sip.digest import DigestCredentials
from telephony_agent.sip.message import Headers, SipRequest, SipResponse, SipUri
from telephony_agent.sip.registration import (
    Keepalive,
    Registration,
    RegistrationState,
    RegistrationTarget,
)


def _target(**overrides: object) -> RegistrationTarget:
    values: dict[str, object] = {
        "name": "trunk",
        "registrar": SipUri.parse("sip:sip.example.net"),
        "aor": "sip:alice@sip.example.net",
        "credentials": DigestCredentials("alice", "s3cret"),
        "contact_user": "alice",
        "expires_s": 300,
        "retry_min_s": 10.0,
        "retry_max_s": 600.0,
    }
    values.update(overrides)
    return RegistrationTarget(**values)  # type: ignore[arg-type]


def _registration(**overrides: object) -> Registration:
    return Registration(
        _target(**overrides),
        contact_host="192.0.2.10",
        contact_port=5060,
        jitter=lambda: 1.0,
        cnonce=lambda: "cn",
    )


def _answer(
    request: SipRequest, status: int, reason: str = "", *headers: tuple[str, str]
) -> SipResponse:
    h = Headers()
    for name in ("Via", "From", "To", "Call-ID", "CSeq"):
        h.add(name, request.headers.get(name) or "")
    for name, value in headers:
        h.add(name, value)
    return SipResponse(status, reason or "X", h)


def _challenge(
    nonce: str = "n1", *, stale: bool = False, algorithm: str = "MD5"
) -> tuple[str, str]:
    extra = ", stale=true" if stale else ""
    value = f'Digest realm="sip.example.net", nonce="{nonce}", qop="auth", algorithm={algorithm}'
    return ("WWW-Authenticate", value + extra)


def test_register_challenge_and_refresh_at_half_the_granted_expiry() -> None:
    reg = _registration()
    first = reg.start(0.0)
    assert first.method == "REGISTER" and first.uri == "sip:sip.example.net"
    assert first.headers.get("Expires") == "300"
    assert first.headers.get("Authorization") is None
    assert first.headers.get("To") == "<sip:alice@sip.example.net>"
    assert first.headers.get("Contact") == "<sip:alice@192.0.2.10:5060>"
    second = reg.on_response(_answer(first, 401, "Unauthorized", _challenge()), 0.1)
    assert second is not None
    auth = second.headers.get("Authorization") or ""
    assert 'username="alice"' in auth and "nc=00000001" in auth and "s3cret" not in auth
    assert second.cseq[0] == first.cseq[0] + 1 and second.call_id == first.call_id
    # The registrar grants less than asked, in the Contact parameter.
    ok = _answer(second, 200, "OK", ("Contact", "<sip:alice@192.0.2.10:5060>;expires=120"))
    assert reg.on_response(ok, 0.2) is None
    assert reg.state is RegistrationState.REGISTERED
    assert reg.granted_s == 120
    # Keep-alives come before the refresh; the refresh is at half of 120 s.
    due = reg.next_deadline()
    assert due is not None and abs(due - 25.2) < 1e-6
    assert reg.on_timer(25.2) == Keepalive(reliable=False)
    refresh = None
    now = 25.2
    while refresh is None:
        now = reg.next_deadline() or 0.0
        action = reg.on_timer(now)
        if isinstance(action, SipRequest):
            refresh = action
    assert abs(now - 60.2) < 1e-6
    # The refresh reuses the nonce with the next nonce count.
    assert "nc=00000002" in (refresh.headers.get("Authorization") or "")


def test_wrong_password_fails_then_backs_off_with_a_cap() -> None:
    reg = _registration(retry_min_s=10.0, retry_max_s=60.0)
    first = reg.start(0.0)
    request = reg.on_response(_answer(first, 401, "", _challenge("a")), 0.0)
    assert request is not None
    # The same nonce refused again: the password is wrong; do not loop.
    assert reg.on_response(_answer(request, 401, "", _challenge("a")), 0.0) is None
    assert reg.state is RegistrationState.FAILED
    assert "credentials refused" in (reg.last_error or "")
    assert "s3cret" not in str(reg.status(0.0))
    delays = []
    now = 0.0
    for _ in range(6):
        deadline = reg.next_deadline()
        assert deadline is not None
        delays.append(round(deadline - now, 3))
        now = deadline
        retry = reg.on_timer(now)
        assert isinstance(retry, SipRequest)
        reg.on_response(_answer(retry, 403, "Forbidden"), now)
    assert delays == [10.0, 20.0, 40.0, 60.0, 60.0, 60.0]


def test_stale_nonce_is_answered_again_without_counting_a_failure() -> None:
    reg = _registration()
    first = reg.start(0.0)
    request = reg.on_response(_answer(first, 401, "", _challenge("a")), 0.0)
    assert request is not None
    reg.on_response(_answer(request, 200, "OK", ("Expires", "300")), 0.0)
    refresh = reg.on_timer(150.0)
    while not isinstance(refresh, SipRequest):
        refresh = reg.on_timer(reg.next_deadline() or 0.0)
    again = reg.on_response(_answer(refresh, 401, "", _challenge("a", stale=True)), 150.0)
    assert again is not None and reg.failures == 0
    assert "nc=00000003" in (again.headers.get("Authorization") or "")


def test_sha256_is_preferred_and_proxy_challenge_uses_proxy_authorization() -> None:
    reg = _registration()
    request = reg.start(0.0)
    response = _answer(
        request,
        407,
        "Proxy Authentication Required",
        ("Proxy-Authenticate", _challenge("m", algorithm="MD5")[1]),
        ("Proxy-Authenticate", _challenge("s", algorithm="SHA-256")[1]),
    )
    answer = reg.on_response(response, 0.0)
    assert answer is not None
    value = answer.headers.get("Proxy-Authorization") or ""
    assert "algorithm=SHA-256" in value and 'nonce="s"' in value
    ha1 = hashlib.sha256(b"alice:sip.example.net:s3cret").hexdigest()
    ha2 = hashlib.sha256(b"REGISTER:sip:sip.example.net").hexdigest()
    expected = hashlib.sha256(f"{ha1}:s:00000001:cn:auth:{ha2}".encode()).hexdigest()
    assert f'response="{expected}"' in value


def test_interval_too_brief_follows_min_expires() -> None:
    reg = _registration(expires_s=60)
    request = reg.start(0.0)
    retry = reg.on_response(_answer(request, 423, "Interval Too Brief", ("Min-Expires", "600")), 0)
    assert retry is not None and retry.headers.get("Expires") == "600"
    reg.on_response(_answer(retry, 200, "OK"), 1.0)
    assert reg.granted_s == 600 and reg.state is RegistrationState.REGISTERED


def test_unavailable_registrar_is_not_hammered_and_retry_after_is_honoured() -> None:
    reg = _registration()
    request = reg.start(0.0)
    reg.on_response(_answer(request, 503, "Service Unavailable", ("Retry-After", "120")), 0.0)
    assert reg.next_deadline() == 120.0
    reg.on_transport_failure(120.0, "timeout")
    assert reg.state is RegistrationState.FAILED and reg.failures == 2
    assert reg.next_deadline() == 140.0


def test_stop_unregisters_with_expires_zero_and_answers_a_challenge() -> None:
    reg = _registration(transport="TCP")
    request = reg.start(0.0)
    reg.on_response(_answer(request, 200, "OK"), 0.0)
    assert reg.on_timer(25.0) == Keepalive(reliable=True)
    bye = reg.stop(30.0)
    assert bye is not None and bye.headers.get("Expires") == "0"
    assert bye.headers.get("Contact") == "<sip:alice@192.0.2.10:5060;transport=tcp>"
    again = reg.on_response(_answer(bye, 401, "", _challenge("z")), 30.0)
    assert again is not None and again.headers.get("Expires") == "0"
    assert reg.on_response(_answer(again, 200, "OK"), 30.1) is None
    assert reg.state is RegistrationState.STOPPED and reg.next_deadline() is None
    # Never registered: nothing to remove.
    assert _registration().stop(0.0) is None


def test_binding_lost_registers_again_at_once() -> None:
    reg = _registration()
    request = reg.start(0.0)
    reg.on_response(_answer(request, 200, "OK"), 0.0)
    again = reg.binding_lost(10.0)
    assert again is not None and reg.state is RegistrationState.REGISTERING
