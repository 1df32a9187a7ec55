"""Agent profiles: who answers a given number, with every setting already resolved.

Why a fully resolved, frozen record: a call picks its profile once, at INVITE time,
and everything downstream (session setup, greeting, tools, DTMF collection) reads
plain fields without knowing which of them came from `[[profiles]]` and which were
inherited from `[agent]`. Loading does all of the merging and checking up front so a
mistake in the file is reported before the first call, not during one.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import Literal
from zoneinfo import ZoneInfo

from telephony_agent.agent.outbound import OpeningSettings
from telephony_agent.agent.tool_wait import ToolWait
from telephony_agent.agent.transfer import TransferSettings

ProviderName = Literal["yandex", "yandex-legacy", "openai", "custom", "local"]
PROVIDER_NAMES: tuple[ProviderName, ...] = ("yandex", "yandex-legacy", "openai", "custom", "local")

#: The call-control tools a profile gets when it does not list `tools`.
BUILTIN_CALL_TOOLS: tuple[str, ...] = ("end_call", "transfer_call", "send_dtmf")

#: Placeholders every `instructions` and `greeting` may use, filled per call.
BUILTIN_PLACEHOLDERS: tuple[str, ...] = (
    "caller",
    "dialled",
    "date",
    "time",
    "weekday",
    "call_id",
    "profile",
)

#: The one placeholder of `dtmf_message`.
DTMF_PLACEHOLDER = "digits"
DEFAULT_DTMF_MESSAGE = "The caller typed: {digits}"
DTMF_TERMINATORS: tuple[str, ...] = ("#", "*", "")

#: The name of the profile built from `[agent]` when no profile has `default = true`.
DEFAULT_PROFILE_NAME = "default"


@dataclass(frozen=True)
class ProfileDefaults:
    """The `[agent]` values a profile inherits for every key it leaves out."""

    instructions: str
    voice: str | None = None
    greeting: str | None = None
    max_duration_s: float | None = None
    dtmf_inter_digit_s: float = 3.0
    dtmf_max_digits: int = 20
    dtmf_terminator: str = "#"
    dtmf_message: str = DEFAULT_DTMF_MESSAGE
    tool_wait: ToolWait = field(default_factory=ToolWait)


@dataclass(frozen=True)
class Profile:
    """One agent: what it is told, how it sounds, which numbers reach it.

    `provider` and `model` None mean the deployment's provider and model; `record` and
    `keep_records` None mean the `[records]` section decides. `tools` None
    means the key was absent (the profile gets `BUILTIN_CALL_TOOLS`); an empty tuple
    means the profile asked for no tools at all. `timezone` None means the system's
    local time. `greeting_audio` is an absolute path to a checked PCM16 WAV.
    """

    name: str
    instructions: str
    is_default: bool = False
    numbers: tuple[str, ...] = ()
    match: re.Pattern[str] | None = None
    greeting: str | None = None
    greeting_audio: Path | None = None
    voice: str | None = None
    provider: ProviderName | None = None
    model: str | None = None
    language: str | None = None
    max_duration_s: float | None = None
    tools: tuple[str, ...] | None = None
    variables: Mapping[str, str] = field(default_factory=lambda: MappingProxyType({}), hash=False)
    timezone: ZoneInfo | None = None
    dtmf_inter_digit_s: float = 3.0
    dtmf_max_digits: int = 20
    dtmf_terminator: str = "#"
    dtmf_message: str = DEFAULT_DTMF_MESSAGE
    #: Record this profile's calls (stereo WAV); None: as `[records] record` says.
    record: bool | None = None
    #: Keep call records of this profile; None: as `[records] enabled` says.
    keep_records: bool | None = None
    #: What the caller hears while a tool runs, and the longest a tool may take.
    tool_wait: ToolWait = field(default_factory=ToolWait)
    #: How calls this profile places open (greeting wait, answering-machine detection).
    outbound: OpeningSettings = field(default_factory=OpeningSettings)
    #: name → SIP URI or number; when set, `transfer_call` may only use these names.
    transfer_targets: Mapping[str, str] = field(
        default_factory=lambda: MappingProxyType({}), hash=False
    )
    #: REFER or a bridge of our own, and what replaces a refused REFER.
    transfer: TransferSettings = field(default_factory=TransferSettings)

    @classmethod
    def from_defaults(cls, defaults: ProfileDefaults) -> Profile:
        """The profile named "default" that answers with plain `[agent]` settings."""
        return cls(
            name=DEFAULT_PROFILE_NAME,
            is_default=True,
            instructions=defaults.instructions,
            greeting=defaults.greeting or None,
            voice=defaults.voice,
            max_duration_s=defaults.max_duration_s,
            dtmf_inter_digit_s=defaults.dtmf_inter_digit_s,
            dtmf_max_digits=defaults.dtmf_max_digits,
            dtmf_terminator=defaults.dtmf_terminator,
            dtmf_message=defaults.dtmf_message,
            tool_wait=defaults.tool_wait,
        )

    @property
    def effective_tools(self) -> tuple[str, ...]:
        """The tool names this profile's calls offer the model."""
        return BUILTIN_CALL_TOOLS if self.tools is None else self.tools

    @property
    def placeholders(self) -> tuple[str, ...]:
        """Every placeholder its `instructions` and `greeting` may use."""
        return BUILTIN_PLACEHOLDERS + tuple(self.variables)

    def describe(self) -> dict[str, object]:
        """Plain values for printing the effective configuration (TOML/JSON friendly)."""
        result: dict[str, object] = {"name": self.name, "default": self.is_default}
        if self.numbers:
            result["numbers"] = list(self.numbers)
        if self.match is not None:
            result["match"] = self.match.pattern
        result["instructions"] = self.instructions
        optional: dict[str, object | None] = {
            "greeting": self.greeting,
            "greeting_audio": str(self.greeting_audio) if self.greeting_audio else None,
            "voice": self.voice,
            "provider": self.provider,
            "model": self.model,
            "language": self.language,
            "max_duration_s": self.max_duration_s,
            "timezone": self.timezone.key if self.timezone else None,
        }
        result.update({key: value for key, value in optional.items() if value is not None})
        result["tools"] = list(self.effective_tools)
        if self.variables:
            result["variables"] = dict(self.variables)
        result["dtmf_inter_digit_s"] = self.dtmf_inter_digit_s
        result["dtmf_max_digits"] = self.dtmf_max_digits
        result["dtmf_terminator"] = self.dtmf_terminator
        result["dtmf_message"] = self.dtmf_message
        result.update(self.tool_wait.describe())
        if self.transfer_targets:
            result["transfer_targets"] = dict(self.transfer_targets)
        result.update(self.transfer.describe())
        return result
