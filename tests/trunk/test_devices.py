"""`[sip]` access settings and `[[sip.users]]` devices."""

from __future__ import annotations

from pathlib import Path

import pytest

from telephony_agent.config import load_settings
from telephony_agent.errors import ConfigError
from telephony_agent.trunk.devices import read_device_passwords


def _write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "agent.toml"
    path.write_text(text)
    return path


def test_users_and_allowlist_load(tmp_path: Path) -> None:
    text = """
[sip]
allow = ["203.0.113.0/24", "198.51.100.7"]
deny_action = "403"

[[sip.users]]
username = "desk1"
password_env = "DESK1_PW"

[[sip.users]]
username = "desk2"
password_file = "desk2.pw"
"""
    (tmp_path / "desk2.pw").write_text("two\n")
    settings = load_settings(_write(tmp_path, text), environ={})
    assert settings.sip.allow == ("203.0.113.0/24", "198.51.100.7")
    assert settings.sip.deny_action == "403"
    assert [u.username for u in settings.sip_users] == ["desk1", "desk2"]
    passwords = read_device_passwords(settings.sip_users, {"DESK1_PW": "one"})
    assert passwords == {"desk1": "one", "desk2": "two"}
    env = load_settings(None, environ={"TELEPHONY_AGENT_SIP_ALLOW": "10.0.0.0/8, 192.0.2.1"})
    assert env.sip.allow == ("10.0.0.0/8", "192.0.2.1")


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ('[sip]\nallow = "10.0.0.0/8"', "expected a list of strings"),
        ('[[sip.users]]\nusername = "a"\npassword = "x"', "passwords never go in the file"),
        ('[[sip.users]]\nusername = "a b"\npassword_env = "X"', "expected a SIP user name"),
        ('[[sip.users]]\nusername = "a"\npasswd_env = "X"', "unknown key sip.users[0].passwd_env"),
        (
            '[[sip.users]]\nusername = "a"\npassword_env = "X"\n'
            '[[sip.users]]\nusername = "a"\npassword_env = "Y"',
            "expected a user name no other",
        ),
    ],
)
def test_bad_access_settings_are_one_line(tmp_path: Path, text: str, message: str) -> None:
    with pytest.raises(ConfigError) as caught:
        load_settings(_write(tmp_path, text), environ={})
    assert message in str(caught.value) and "\n" not in str(caught.value)
