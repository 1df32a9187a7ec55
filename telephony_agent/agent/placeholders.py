"""Per-call text of a profile: instructions and greeting with placeholders filled, DTMF lines.

Why rendering never raises: it runs while a call is being set up, with values taken
from the network. Templates were checked when the settings file loaded, and values
are inserted as plain text, so a caller id such as "{date}" or "}{" stays exactly that.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime

from telephony_agent.agent.profiles import DTMF_PLACEHOLDER, Profile
from telephony_agent.agent.templates import substitute

#: English names by `datetime.weekday()`: fixed, whatever the process locale says.
WEEKDAYS = ("Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday")


@dataclass(frozen=True)
class CallFacts:
    """What is known about a call when it starts.

    `now` is converted to the profile's time zone (or the system's local time when the
    profile has none); a naive `now` is taken to be system local time.
    """

    caller: str
    dialled: str
    call_id: str
    now: datetime
    #: Values for this call only (an outbound call's `variables`), over the profile's.
    variables: Mapping[str, str] = field(default_factory=dict)


def placeholder_values(profile: Profile, facts: CallFacts) -> dict[str, str]:
    """Every placeholder of `profile` with its value for this call."""
    try:
        local = facts.now.astimezone(profile.timezone)
    except (OverflowError, ValueError, OSError):
        # A clock value at the very edge of the datetime range: show it as given.
        local = facts.now
    values = dict(profile.variables)
    values.update(facts.variables)
    values.update(
        caller=facts.caller,
        dialled=facts.dialled,
        date=local.date().isoformat(),
        time=f"{local.hour:02d}:{local.minute:02d}",
        weekday=WEEKDAYS[local.weekday()],
        call_id=facts.call_id,
        profile=profile.name,
    )
    return values


def render_instructions(profile: Profile, facts: CallFacts) -> str:
    """The session instructions for this call."""
    return substitute(profile.instructions, placeholder_values(profile, facts))


def render_greeting(profile: Profile, facts: CallFacts) -> str | None:
    """The instruction for the agent's first response, or None when it waits for the caller."""
    if not profile.greeting:
        return None
    return substitute(profile.greeting, placeholder_values(profile, facts))


def format_dtmf_message(profile: Profile, digits: str) -> str:
    """The text sent to the model for typed digits, e.g. "The caller typed: 4 5 1 2 #".

    Digits are separated by spaces so the model reads them one by one (a speech model
    says "4512" as a number); the terminator, when typed, is included.
    """
    spaced = " ".join(ch for ch in digits if not ch.isspace())
    return substitute(profile.dtmf_message, {DTMF_PLACEHOLDER: spaced})
