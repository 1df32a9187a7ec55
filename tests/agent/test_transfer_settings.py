"""Transfer keys of a profile: REFER with a fallback, or a bridge at once; checked together."""

from __future__ import annotations

import pytest

from telephony_agent.agent.transfer import DEFAULT_TRANSFER_MESSAGE, TransferSettings
from telephony_agent.errors import ConfigError

from .support import ORIGIN, one, parse


def error_of(text: str) -> str:
    with pytest.raises(ConfigError) as info:
        parse('[[profiles]]\nname = "p"\n' + text)
    message = str(info.value)
    assert "\n" not in message and message.startswith(f"{ORIGIN}: profiles[p].")
    return message


def test_by_default_a_refused_refer_is_only_reported() -> None:
    settings = one("").transfer
    assert settings == TransferSettings()
    assert (settings.mode, settings.fallback) == ("refer", "none")
    assert one("").describe()["transfer_mode"] == "refer"


def test_each_fallback_and_the_bridge_mode() -> None:
    assert one('transfer_fallback = "bridge"\n').transfer.fallback == "bridge"
    message = one('transfer_fallback = "message"\n').transfer
    assert (message.fallback, message.message) == ("message", DEFAULT_TRANSFER_MESSAGE)
    custom = one('transfer_fallback = "message"\ntransfer_message = "Call 555-0100."\n')
    assert custom.transfer.message == "Call 555-0100."
    assert custom.describe()["transfer_message"] == "Call 555-0100."
    assert one('transfer_mode = "bridge"\n').transfer.mode == "bridge"


def test_mistakes_name_the_key_and_what_was_expected() -> None:
    assert "transfer_mode = 'blind': expected one of 'refer', 'bridge'" in error_of(
        'transfer_mode = "blind"\n'
    )
    assert "transfer_fallback = 'hangup'" in error_of('transfer_fallback = "hangup"\n')
    assert 'expected "message" when transfer_message is set' in error_of(
        'transfer_message = "Call us."\n'
    )
    assert 'expected "refer" when transfer_fallback is set' in error_of(
        'transfer_mode = "bridge"\ntransfer_fallback = "message"\n'
    )
    assert "transfer_message = ''" in error_of(
        'transfer_fallback = "message"\ntransfer_message = ""\n'
    )
