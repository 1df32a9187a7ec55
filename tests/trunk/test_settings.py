"""`[[registrations]]` parsing: defaults, secrets kept out of the file, one-line errors."""

from __future__ import annotations

from pathlib import Path

import pytest

from telephony_agent.config import load_settings
from telephony_agent.errors import ConfigError
from telephony_agent.trunk.settings import read_password


def test_defaults_follow_the_registrar(tmp_path: Path) -> None:
    settings = load_settings(
        _write(
            tmp_path,
            """
[[profiles]]
name = "sales"
numbers = ["100"]

[[registrations]]
name = "trunk"
registrar = "sip:sip.example.net;transport=tcp"
username = "alice"
password_env = "TRUNK_PASSWORD"
profile = "sales"
""",
        ),
        environ={},
    )
    (entry,) = settings.registrations
    assert entry.domain == "sip.example.net"
    assert entry.auth_username == "alice" and entry.contact_user == "alice"
    assert entry.transport == "tcp" and entry.expires == 300
    assert entry.aor == "sip:alice@sip.example.net"
    assert read_password(entry, {"TRUNK_PASSWORD": "pw"}) == "pw"


def _write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "agent.toml"
    path.write_text(text)
    return path


BASE = 'registrar = "sip:pbx.local"\nusername = "u"\npassword_env = "P"\n'


@pytest.mark.parametrize(
    ("table", "message"),
    [
        (BASE + 'password = "hunter2"', "passwords never go in the file"),
        ('registrar = "sip:pbx.local"\nusername = "u"', "exactly one of password_env"),
        (BASE + 'password_file = "x"', "exactly one of password_env"),
        (BASE.replace("sip:pbx.local", "http://x"), "expected a SIP URI"),
        (BASE + "expires = 5", "registrations[registration-1].expires = 5"),
        (BASE + 'transport = "sctp"', "expected one of udp, tcp, tls"),
        (BASE + 'profile = "nobody"', "expected the name of a [[profiles]] table"),
        (BASE + "exprires = 60", "did you mean 'expires'"),
        (BASE.replace('"u"', '"a b"'), "expected a SIP user name"),
        (BASE + "retry_min_s = 100\nretry_max_s = 10", "expected at least retry_min_s"),
    ],
)
def test_bad_tables_name_key_value_and_expectation(
    tmp_path: Path, table: str, message: str
) -> None:
    with pytest.raises(ConfigError) as caught:
        load_settings(_write(tmp_path, "[[registrations]]\n" + table + "\n"), environ={})
    text = str(caught.value)
    assert message in text and "\n" not in text
    assert "hunter2" not in text


def test_duplicate_names_and_contact_users_are_refused(tmp_path: Path) -> None:
    text = f"[[registrations]]\nname = 'a'\n{BASE}\n[[registrations]]\nname = 'b'\n{BASE}"
    with pytest.raises(ConfigError, match="contact_user = 'u'"):
        load_settings(_write(tmp_path, text), environ={})
    text = f"[[registrations]]\nname = 'a'\n{BASE}\n[[registrations]]\nname = 'a'\n{BASE}"
    with pytest.raises(ConfigError, match="expected a unique name"):
        load_settings(_write(tmp_path, text), environ={})


def test_password_sources_fail_clearly(tmp_path: Path) -> None:
    settings = load_settings(_write(tmp_path, f"[[registrations]]\n{BASE}"), environ={})
    with pytest.raises(ConfigError, match="password_env = 'P': the variable is not set"):
        read_password(settings.registrations[0], {})
    text = '[[registrations]]\nregistrar = "sip:pbx.local"\nusername = "u"\npassword_file = "pw"\n'
    settings = load_settings(_write(tmp_path, text), environ={})
    with pytest.raises(ConfigError, match="cannot read it"):
        read_password(settings.registrations[0], {})
    (tmp_path / "pw").write_text("secret\n")
    assert read_password(settings.registrations[0], {}) == "secret"
