"""Which profile answers a dialled number: first match in file order, else the default.

Why first-match-wins over "most specific wins": the settings file is the one place a
person reads to predict routing, and file order is the only rule that needs no
explanation. `explain` prints the decision for `config check --route`.

Matching compares the dialled string (the user part of the Request-URI or To) exactly
as given and also with visual separators removed on both sides, so an entry written
"+7 (495) 123-45-67" answers a gateway sending "+74951234567". A `match` regex must
match the whole string (`re.fullmatch`), as given or without separators. Nothing that
changes meaning is normalised: "+7..." and "8..." are different numbers.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from telephony_agent.agent.numbers import normalise_number
from telephony_agent.agent.profiles import Profile, ProfileDefaults


@dataclass(frozen=True)
class _Route:
    """One profile's matching data, prepared once: written numbers by their plain form."""

    profile: Profile
    exact: frozenset[str]
    plain: dict[str, str]


@dataclass(frozen=True)
class RouteDecision:
    """The profile that answers a number and, in words, why."""

    profile: Profile
    reason: str


class ProfileBook:
    """The loaded profiles in file order plus the one that answers everything else."""

    def __init__(self, profiles: Sequence[Profile], default: Profile) -> None:
        """`default` is the profile marked `default = true` (it may be one of `profiles`),
        else the one `Profile.from_defaults` builds from `[agent]`."""
        self._profiles = tuple(profiles)
        self._default = default
        self._by_name: dict[str, Profile] = {}
        listed = any(profile is default for profile in self._profiles)
        everyone = self._profiles if listed else (*self._profiles, default)
        for profile in everyone:
            if profile.name in self._by_name:
                raise ValueError(f"two profiles are named {profile.name!r}")
            self._by_name[profile.name] = profile
        self._routes = tuple(
            _Route(
                profile=profile,
                exact=frozenset(profile.numbers),
                plain={normalise_number(n): n for n in profile.numbers},
            )
            for profile in self._profiles
        )

    @classmethod
    def build(cls, profiles: Sequence[Profile], defaults: ProfileDefaults) -> ProfileBook:
        """The book for parsed profiles: their default if one is marked, else `[agent]`'s."""
        marked = [p for p in profiles if p.is_default]
        if len(marked) > 1:
            names = ", ".join(repr(p.name) for p in marked)
            raise ValueError(f"more than one default profile: {names}")
        default = marked[0] if marked else Profile.from_defaults(defaults)
        return cls(profiles, default)

    @property
    def profiles(self) -> tuple[Profile, ...]:
        """The routable profiles in file order (without a default built from `[agent]`)."""
        return self._profiles

    @property
    def default(self) -> Profile:
        """The profile for numbers no other profile matches."""
        return self._default

    def by_name(self, name: str) -> Profile | None:
        """A profile by name, including the default one; None when there is none."""
        return self._by_name.get(name)

    def route(self, number: str) -> Profile:
        """The profile that answers `number`: the first that matches, else the default."""
        return self.decide(number).profile

    def explain(self, number: str) -> str:
        """One line saying who answers `number` and why, e.g.
        "booking -> profile 'booking' (numbers)"."""
        decision = self.decide(number)
        return f"{number} -> profile {decision.profile.name!r} ({decision.reason})"

    def decide(self, number: str) -> RouteDecision:
        """The routing decision for `number` with the reason `explain` prints."""
        plain = normalise_number(number)
        for route in self._routes:
            profile = route.profile
            if number in route.exact:
                return RouteDecision(profile, "numbers")
            written = route.plain.get(plain)
            if written is not None:
                return RouteDecision(profile, f"numbers, {written!r} without separators")
            if profile.match is not None:
                if profile.match.fullmatch(number):
                    return RouteDecision(profile, f"match '{profile.match.pattern}'")
                if plain != number and profile.match.fullmatch(plain):
                    return RouteDecision(
                        profile, f"match '{profile.match.pattern}' without separators"
                    )
        return RouteDecision(self._default, "default")
