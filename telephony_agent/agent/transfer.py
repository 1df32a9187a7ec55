"""`[[profiles]]` keys for how `transfer_call` hands a caller on.

Why apart from the profile parser: the three keys only make sense together (a message
without the "message" fallback is unused; a fallback of a profile that bridges
directly never applies), and they are checked together with one-line errors.

`transfer_mode = "refer"` (the default) asks the caller's side to make the call itself
(REFER): our media path is free at once. Many trunks and some PBXs refuse REFER (405,
501, 403, 420, 488) or never answer it; `transfer_fallback` then says what happens
instead: `"bridge"` places a call to the target ourselves and relays the audio between
both sides, `"message"` has the agent tell the caller how to reach the target and hang
up, `"none"` reports the failure to the model like any other. `transfer_mode =
"bridge"` skips the REFER for peers known to refuse it.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal, cast

from telephony_agent.agent.values import KeyChecker

__all__ = [
    "TRANSFER_KEYS",
    "TransferFallback",
    "TransferMode",
    "TransferSettings",
    "parse_transfer",
]

TransferMode = Literal["refer", "bridge"]
TransferFallback = Literal["none", "bridge", "message"]

TRANSFER_KEYS = ("transfer_mode", "transfer_fallback", "transfer_message")
_MODES = ("refer", "bridge")
_FALLBACKS = ("none", "bridge", "message")
DEFAULT_TRANSFER_MESSAGE = (
    "I cannot put you through on this line. Please call again and ask for them directly."
)


@dataclass(frozen=True)
class TransferSettings:
    """How one profile transfers: REFER first or a bridge at once, and what replaces a
    refused REFER."""

    mode: TransferMode = "refer"
    fallback: TransferFallback = "none"
    #: What the agent says with `fallback = "message"` before it hangs up.
    message: str = DEFAULT_TRANSFER_MESSAGE

    def describe(self) -> dict[str, object]:
        result: dict[str, object] = {"transfer_mode": self.mode}
        if self.mode == "refer":
            result["transfer_fallback"] = self.fallback
        if self.fallback == "message":
            result["transfer_message"] = self.message
        return result


def parse_transfer(check: KeyChecker, table: Mapping[str, Any]) -> TransferSettings:
    mode = check.choice("transfer_mode", table.get("transfer_mode", "refer"), _MODES)
    fallback = check.choice("transfer_fallback", table.get("transfer_fallback", "none"), _FALLBACKS)
    if mode == "bridge" and "transfer_fallback" in table:
        check.fail(
            "transfer_mode",
            mode,
            'expected "refer" when transfer_fallback is set (a bridge has no fallback)',
        )
    message = DEFAULT_TRANSFER_MESSAGE
    if "transfer_message" in table:
        message = check.text("transfer_message", table["transfer_message"])
        if fallback != "message":
            check.fail(
                "transfer_fallback", fallback, 'expected "message" when transfer_message is set'
            )
    return TransferSettings(
        mode=cast("TransferMode", mode),
        fallback=cast("TransferFallback", fallback),
        message=message,
    )
