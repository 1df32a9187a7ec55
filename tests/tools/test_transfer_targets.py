"""transfer_call limited to a profile's named targets, and how failures read."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from telephony_agent.call.tools import builtin_tools
from telephony_agent.config import load_settings
from telephony_agent.errors import ConfigError
from telephony_agent.media.leg import TransferResult


class _Ctx:
    call_id = "c1"

    def __init__(self, result: TransferResult) -> None:
        self.result = result
        self.targets: list[str] = []

    def request_hangup(self, reason: str) -> None:
        del reason

    async def transfer(self, target: str) -> TransferResult:
        self.targets.append(target)
        return self.result

    def send_dtmf(self, digits: str) -> bool:
        del digits
        return True


def _transfer_tool(targets: dict[str, str] | None) -> Any:
    (tool,) = [t for t in builtin_tools(targets) if t.spec.name == "transfer_call"]
    return tool


async def test_named_targets_are_the_only_choices() -> None:
    tool = _transfer_tool({"sales": "sip:sales@pbx.local", "front desk": "+15550100"})
    assert tool.spec.parameters["properties"]["target"]["enum"] == ["front desk", "sales"]
    ctx = _Ctx(TransferResult(True))
    assert await tool.handler({"target": "sales"}, ctx) == {"ok": True}
    refused = await tool.handler({"target": "+19005550000"}, ctx)
    assert refused["ok"] is False and "front desk, sales" in refused["error"]
    assert ctx.targets == ["sip:sales@pbx.local"]


async def test_a_failed_transfer_reads_as_a_sentence() -> None:
    tool = _transfer_tool(None)
    ctx = _Ctx(TransferResult(False, "declined", 603))
    result = await tool.handler({"target": "sip:desk@pbx.local"}, ctx)
    assert result == {
        "ok": False,
        "error": "the transfer to sip:desk@pbx.local failed: the call was declined",
    }


def test_profile_transfer_targets_are_checked(tmp_path: Path) -> None:
    path = tmp_path / "agent.toml"
    path.write_text(
        '[[profiles]]\nname = "desk"\ndefault = true\n'
        'transfer_targets = { sales = "sip:sales@pbx.local", "front desk" = "+15550100" }\n'
    )
    (profile,) = load_settings(path, environ={}).profiles
    assert dict(profile.transfer_targets) == {
        "sales": "sip:sales@pbx.local",
        "front desk": "+15550100",
    }
    path.write_text('[[profiles]]\nname = "desk"\ntransfer_targets = { sales = "http://x" }\n')
    with pytest.raises(ConfigError, match=r"transfer_targets.sales = 'http://x': expected a sip"):
        load_settings(path, environ={})


async def test_a_bridge_says_so_and_a_message_fallback_tells_the_model_what_to_say() -> None:
    tool = _transfer_tool({"sales": "sip:sales@pbx.local"})
    bridged = _Ctx(TransferResult(True, "transferred", 200, mode="bridge"))
    assert await tool.handler({"target": "sales"}, bridged) == {"ok": True, "mode": "bridge"}
    refused = _Ctx(TransferResult(False, "refer_not_supported", 405, message="Dial 555-0100."))
    result = await tool.handler({"target": "sales"}, refused)
    assert result["ok"] is False
    assert "the phone system cannot transfer calls" in result["error"]
    assert "Dial 555-0100." in result["instructions"]
    assert "end_call" in result["instructions"]
