"""What a business tool may know about the call it runs in.

Why a separate, plain record instead of the Call object: operator code (a Python tool,
a webhook receiver) must see who called and which profile answered, but must not be
able to hang up, read the session's API key or reach into the audio path. Everything
here is a copy; nothing refers back to the live call.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType

from structlog.typing import FilteringBoundLogger


def _frozen(values: Mapping[str, str]) -> Mapping[str, str]:
    return MappingProxyType(dict(values))


@dataclass(frozen=True)
class CallInfo:
    """The call a business tool is bound to: ids, numbers and the profile's variables."""

    call_id: str
    profile: str
    caller: str
    dialled: str
    variables: Mapping[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        # A read-only copy: a tool must not change what the next tool call sees.
        object.__setattr__(self, "variables", _frozen(self.variables))


@dataclass(frozen=True)
class ToolCallContext:
    """The first argument of a Python tool: `function(context, arguments)`.

    `logger` is a structlog logger already bound with `call_id` and `tool`, so a tool's
    own log lines land next to the call's. No secret is reachable from here.
    """

    call_id: str
    profile: str
    caller: str
    dialled: str
    variables: Mapping[str, str]
    logger: FilteringBoundLogger = field(repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "variables", _frozen(self.variables))
