"""Digest answers checked against the RFCs' own worked examples."""

from __future__ import annotations

import pytest

from telephony_agent.sip.digest import (
    DigestClient,
    DigestCredentials,
    DigestError,
    choose_challenge,
    parse_challenge,
)

RFC7616_CHALLENGE = (
    'realm="http-auth@example.org", qop="auth, auth-int", '
    'nonce="7ypf/xlj9XXwfDPEoM4URrv/xwf94BcCAzFZH4GiTo0v", '
    'opaque="FQhe/qaU925kfnzjCev0ciny7QMkPqMAFRtzCUYo5tdS"'
)
RFC7616_CNONCE = "f2/wE4q74E6zIJEtWaHKaf5wv/H5QzzpXusqGemxURZJ"


def _params(header: str) -> dict[str, str]:
    body = header.removeprefix("Digest ")
    result = {}
    for part in body.split(", "):
        name, _, value = part.partition("=")
        result[name] = value.strip('"')
    return result


@pytest.mark.parametrize(
    ("algorithm", "expected"),
    [
        ("MD5", "8ca523f5e9506fed4657c9700eebdbec"),
        ("SHA-256", "753927fa0e85d155564e2e272a28d1802ca10daf4496794697cf8db5856cb6c1"),
    ],
)
def test_rfc7616_examples(algorithm: str, expected: str) -> None:
    challenge = parse_challenge(f"Digest {RFC7616_CHALLENGE}, algorithm={algorithm}")
    client = DigestClient(
        DigestCredentials("Mufasa", "Circle of Life"), cnonce=lambda: RFC7616_CNONCE
    )
    client.accept(challenge)
    answer = client.authorization("GET", "/dir/index.html")
    assert answer is not None
    name, value = answer
    assert name == "Authorization"
    fields = _params(value)
    assert fields["response"] == expected
    assert fields["nc"] == "00000001"
    assert fields["qop"] == "auth"
    assert fields["opaque"] == "FQhe/qaU925kfnzjCev0ciny7QMkPqMAFRtzCUYo5tdS"
    assert "Circle" not in value


def test_rfc2617_example_and_nonce_count() -> None:
    challenge = parse_challenge(
        'Digest realm="testrealm@host.com", qop="auth,auth-int", '
        'nonce="dcd98b7102dd2f0e8b11d0f600bfb0c093", opaque="5ccc069c403ebaf9f0171e9517f40e41"'
    )
    client = DigestClient(DigestCredentials("Mufasa", "Circle Of Life"), cnonce=lambda: "0a4f113b")
    client.accept(challenge)
    first = client.authorization("GET", "/dir/index.html")
    assert first is not None
    assert _params(first[1])["response"] == "6629fae49393a05397450978507c4ef1"
    second = client.authorization("GET", "/dir/index.html")
    assert second is not None and _params(second[1])["nc"] == "00000002"
    # The same nonce again keeps counting; a new nonce starts over.
    client.accept(challenge)
    third = client.authorization("GET", "/dir/index.html")
    assert third is not None and _params(third[1])["nc"] == "00000003"
    client.accept(parse_challenge('Digest realm="testrealm@host.com", qop="auth", nonce="new"'))
    fourth = client.authorization("GET", "/dir/index.html")
    assert fourth is not None and _params(fourth[1])["nc"] == "00000001"


def test_without_qop_uses_rfc2069_response() -> None:
    challenge = parse_challenge('Digest realm="r", nonce="n"', proxy=True)
    client = DigestClient(DigestCredentials("u", "p"))
    client.accept(challenge)
    answer = client.authorization("REGISTER", "sip:example.net")
    assert answer is not None
    name, value = answer
    assert name == "Proxy-Authorization"
    import hashlib

    ha1 = hashlib.md5(b"u:r:p").hexdigest()
    ha2 = hashlib.md5(b"REGISTER:sip:example.net").hexdigest()
    assert _params(value)["response"] == hashlib.md5(f"{ha1}:n:{ha2}".encode()).hexdigest()
    assert "nc" not in _params(value)


def test_sess_variant_hashes_the_nonce_into_ha1() -> None:
    import hashlib

    challenge = parse_challenge('Digest realm="r", nonce="n", qop="auth", algorithm=MD5-sess')
    client = DigestClient(DigestCredentials("u", "p"), cnonce=lambda: "c")
    client.accept(challenge)
    answer = client.authorization("INVITE", "sip:x@y")
    assert answer is not None
    ha1 = hashlib.md5((hashlib.md5(b"u:r:p").hexdigest() + ":n:c").encode()).hexdigest()
    ha2 = hashlib.md5(b"INVITE:sip:x@y").hexdigest()
    expected = hashlib.md5(f"{ha1}:n:00000001:c:auth:{ha2}".encode()).hexdigest()
    assert _params(answer[1])["response"] == expected


def test_choose_prefers_sha256_and_skips_unusable() -> None:
    chosen = choose_challenge(
        [
            'Digest realm="r", nonce="a", algorithm=MD5, qop="auth"',
            'Digest realm="r", nonce="b", algorithm=SHA-512-256, qop="auth"',
            'Digest realm="r", nonce="c", algorithm=SHA-256, qop="auth"',
            "Basic realm=x",
        ]
    )
    assert (chosen.algorithm, chosen.nonce) == ("SHA-256", "c")
    with pytest.raises(DigestError, match="not supported"):
        choose_challenge(['Digest realm="r", nonce="b", algorithm=SHA-512-256'])


def test_stale_and_quoting() -> None:
    challenge = parse_challenge(r'Digest realm="a \"quoted\" realm", nonce="x", stale=TRUE')
    assert challenge.realm == 'a "quoted" realm'
    assert challenge.stale


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ('Digest nonce="x"', "no realm"),
        ('Digest realm="r"', "no nonce"),
        ('Digest nonce="x", realm="r', "unterminated"),
        ("Digest realm", "no value"),
        ("Basic realm=x", "not Digest"),
        ("Digest " + ",".join(f"p{i}=v" for i in range(40)), "too many"),
        ("Digest realm=" + "x" * 5000, "longer than"),
    ],
)
def test_bad_challenges_name_the_problem(value: str, message: str) -> None:
    with pytest.raises(DigestError, match=message):
        parse_challenge(value)


def test_wrong_realm_is_refused_without_the_password() -> None:
    client = DigestClient(DigestCredentials("u", "secret-pw", realm="mine"))
    client.accept(parse_challenge('Digest realm="theirs", nonce="n"'))
    with pytest.raises(DigestError) as caught:
        client.authorization("REGISTER", "sip:x")
    assert "secret-pw" not in str(caught.value)
    assert "secret-pw" not in repr(DigestCredentials("u", "secret-pw"))
