"""`[[profiles]]` keys for calls the agent places: when to greet, and what to do when a
machine answers.

Why apart from the profile parser: these keys only matter for outbound calls, belong
together (an action without detection is meaningless, a message without the
`leave_message` action is unused) and are checked together.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal, cast

from telephony_agent.agent.values import KeyChecker

__all__ = [
    "OUTBOUND_KEYS",
    "MachineAction",
    "OpeningSettings",
    "outbound_note",
    "parse_outbound",
]

MachineAction = Literal["hangup", "leave_message", "continue"]


@dataclass(frozen=True)
class OpeningSettings:
    """How an outbound call opens (per profile)."""

    greet_after_s: float = 3.0
    amd: Literal["off", "detect"] = "off"
    on_machine: MachineAction = "hangup"
    #: What the agent says to a machine with `on_machine = "leave_message"`.
    machine_message: str = ""


OUTBOUND_KEYS = ("outbound_greeting_after_s", "amd", "amd_action", "amd_message")
_ACTIONS = ("hangup", "leave_message", "continue")


def parse_outbound(check: KeyChecker, table: Mapping[str, Any]) -> OpeningSettings:
    greet_after = check.number(
        "outbound_greeting_after_s", table.get("outbound_greeting_after_s", 3.0), 0.0, 30.0
    )
    amd = check.choice("amd", table.get("amd", "off"), ("off", "detect"))
    action = check.choice("amd_action", table.get("amd_action", "hangup"), _ACTIONS)
    message = ""
    if "amd_message" in table:
        message = check.text("amd_message", table["amd_message"])
    if action == "leave_message" and not message:
        check.fail("amd_message", table.get("amd_message"), "expected the message to leave")
    if amd == "off" and ("amd_action" in table or "amd_message" in table):
        check.fail("amd", amd, 'expected "detect" when amd_action or amd_message is set')
    return OpeningSettings(
        greet_after_s=greet_after,
        amd="detect" if amd == "detect" else "off",
        on_machine=cast("MachineAction", action),
        machine_message=message,
    )


def outbound_note(greeting: str | None) -> str:
    """Added to the instructions of a call we placed, so the model's first words to the
    callee's "Hello?" are the profile's greeting, not an answer to a question."""
    note = (
        "\n\nThis is an outbound call: you placed it. Wait for the person to speak first; "
        "when they do, introduce yourself"
    )
    return note + (f" by saying: {greeting}" if greeting else ".")
