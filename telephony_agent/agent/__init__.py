"""Agent profiles: different numbers reach different agents.

A settings file may hold `[[profiles]]` tables; each names the numbers (or a regex) it
answers and overrides any `[agent]` value. This package is a lower layer: it parses and
checks the tables, routes a dialled number to a profile and renders a profile's
per-call text, and depends on nothing in the project but `telephony_agent.errors`.
"""

from telephony_agent.agent.numbers import normalise_number
from telephony_agent.agent.parsing import KNOWN_KEYS, parse_profile_tables
from telephony_agent.agent.placeholders import (
    CallFacts,
    format_dtmf_message,
    placeholder_values,
    render_greeting,
    render_instructions,
)
from telephony_agent.agent.profiles import (
    BUILTIN_CALL_TOOLS,
    BUILTIN_PLACEHOLDERS,
    DEFAULT_DTMF_MESSAGE,
    DEFAULT_PROFILE_NAME,
    PROVIDER_NAMES,
    Profile,
    ProfileDefaults,
    ProviderName,
)
from telephony_agent.agent.routing import ProfileBook, RouteDecision
from telephony_agent.agent.tool_wait import (
    DEFAULT_FILLER_AFTER_S,
    DEFAULT_FILLER_INSTRUCTIONS,
    DEFAULT_TOOL_TIMEOUT_S,
    HOLD_TONE,
    ToolFeedbackKind,
    ToolWait,
    parse_tool_wait,
)

__all__ = [
    "BUILTIN_CALL_TOOLS",
    "BUILTIN_PLACEHOLDERS",
    "DEFAULT_DTMF_MESSAGE",
    "DEFAULT_FILLER_AFTER_S",
    "DEFAULT_FILLER_INSTRUCTIONS",
    "DEFAULT_PROFILE_NAME",
    "DEFAULT_TOOL_TIMEOUT_S",
    "HOLD_TONE",
    "KNOWN_KEYS",
    "PROVIDER_NAMES",
    "CallFacts",
    "Profile",
    "ProfileBook",
    "ProfileDefaults",
    "ProviderName",
    "RouteDecision",
    "ToolFeedbackKind",
    "ToolWait",
    "format_dtmf_message",
    "normalise_number",
    "parse_profile_tables",
    "parse_tool_wait",
    "placeholder_values",
    "render_greeting",
    "render_instructions",
]
