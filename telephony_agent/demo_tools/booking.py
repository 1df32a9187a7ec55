"""An in-memory restaurant for the booking-line demo: `check_availability` and `make_booking`.

The demo's agent books a table with real tool calls, so there must be something real to
call that works offline: a fixed dinner service (today and tomorrow, 18:00 to 22:00 on
the hour, a few tables per slot) held in this process. Tomorrow at 19:00 is free for
parties of up to six; tomorrow at 20:00 is fully booked.

Both functions have the Python tool signature `function(context, arguments)` and run in
worker threads, so the restaurant's state sits behind one lock: two calls booking at
once never get the same table or the same reference. References are a counter from
1042: deterministic (a demo run always reads back the same number) and unique per
process. Bad arguments come back as `{"error": ...}` naming the argument, so the model
can correct itself; nothing here raises for what a caller or a model may send.

The JSON Schema `parameters` and the descriptions of both tools are module constants,
ready to be put in a profile's tool table.
"""

from __future__ import annotations

import re
import threading
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Protocol

DAYS = ("today", "tomorrow")
SLOT_TIMES = ("18:00", "19:00", "20:00", "21:00", "22:00")
MAX_PARTY = 12
FIRST_REFERENCE = 1042
_TIME = re.compile(r"([01][0-9]|2[0-3]):([0-5][0-9])")
_PHONE_LAST4 = re.compile(r"[0-9]{4}")

OPENING_TABLES: Mapping[tuple[str, str], tuple[int, ...]] = {
    ("today", "18:00"): (),
    ("today", "19:00"): (),
    ("today", "20:00"): (4,),
    ("today", "21:00"): (2, 6),
    ("today", "22:00"): (),
    ("tomorrow", "18:00"): (2, 4),
    ("tomorrow", "19:00"): (2, 4, 6),
    ("tomorrow", "20:00"): (),
    ("tomorrow", "21:00"): (4, 8),
    ("tomorrow", "22:00"): (2,),
}
"""Free tables (their seats) per slot when the process starts; () is fully booked."""

CHECK_AVAILABILITY_DESCRIPTION = (
    "Check whether the Riverside restaurant has a free table for a party on a day and time."
)
MAKE_BOOKING_DESCRIPTION = (
    "Book a table at the Riverside restaurant; returns the booking reference to read back."
)
_SLOT_PROPERTIES: dict[str, Any] = {
    "party_size": {
        "type": "integer",
        "minimum": 1,
        "maximum": MAX_PARTY,
        "description": "How many people, 1 to 12.",
    },
    "day": {"type": "string", "enum": list(DAYS), "description": "today or tomorrow"},
    "time": {
        "type": "string",
        "pattern": "^([01][0-9]|2[0-3]):[0-5][0-9]$",
        "description": "24-hour time, e.g. 19:00. Dinner is served 18:00 to 22:00.",
    },
}
CHECK_AVAILABILITY_PARAMETERS: dict[str, Any] = {
    "type": "object",
    "properties": _SLOT_PROPERTIES,
    "required": ["party_size", "day", "time"],
    "additionalProperties": False,
}
MAKE_BOOKING_PARAMETERS: dict[str, Any] = {
    "type": "object",
    "properties": {
        **_SLOT_PROPERTIES,
        "phone_last4": {
            "type": "string",
            "pattern": "^[0-9]{4}$",
            "description": "The last four digits of the caller's phone number.",
        },
    },
    "required": ["party_size", "day", "time", "phone_last4"],
    "additionalProperties": False,
}


class ToolLogger(Protocol):
    def info(self, event: str, **fields: Any) -> Any: ...


class ToolContext(Protocol):
    """What this module uses of the context a Python tool is called with."""

    @property
    def call_id(self) -> str: ...
    @property
    def profile(self) -> str: ...
    @property
    def caller(self) -> str: ...
    @property
    def dialled(self) -> str: ...
    @property
    def variables(self) -> Mapping[str, str]: ...
    @property
    def logger(self) -> ToolLogger: ...


class BadArgument(ValueError):
    """One argument is missing or wrong; the message names it, its value and the rule."""


@dataclass(frozen=True)
class Slot:
    party_size: int
    day: str
    time: str

    def describe(self) -> dict[str, Any]:
        return {"party_size": self.party_size, "day": self.day, "time": self.time}


@dataclass(frozen=True)
class Booking:
    reference: str
    slot: Slot
    seats: int
    """Seats of the table it took."""
    phone_last4: str
    call_id: str


def parse_slot(arguments: Mapping[str, Any]) -> Slot:
    size = arguments.get("party_size")
    if isinstance(size, bool) or not isinstance(size, int) or not 1 <= size <= MAX_PARTY:
        raise BadArgument(f"party_size = {size!r}: expected a whole number from 1 to {MAX_PARTY}")
    day = arguments.get("day")
    if not isinstance(day, str) or day.strip().lower() not in DAYS:
        raise BadArgument(f"day = {day!r}: expected today or tomorrow")
    time = arguments.get("time")
    match = _TIME.fullmatch(time.strip()) if isinstance(time, str) else None
    if match is None:
        raise BadArgument(f"time = {time!r}: expected 24-hour HH:MM, e.g. 19:00")
    return Slot(size, day.strip().lower(), f"{match.group(1)}:{match.group(2)}")


def parse_phone_last4(arguments: Mapping[str, Any]) -> str:
    digits = arguments.get("phone_last4")
    if not isinstance(digits, str) or _PHONE_LAST4.fullmatch(digits) is None:
        raise BadArgument("phone_last4: expected exactly four digits")
    return digits


class Restaurant:
    """The dinner service's free tables and its bookings; safe to use from many threads."""

    def __init__(self, tables: Mapping[tuple[str, str], tuple[int, ...]] = OPENING_TABLES):
        self._lock = threading.Lock()
        self._free = {slot: sorted(seats) for slot, seats in tables.items()}
        self._bookings: list[Booking] = []
        self._next_reference = FIRST_REFERENCE

    def _table_for(self, slot: Slot) -> int | None:
        """Seats of the smallest free table that fits the party (lock held)."""
        fitting = [s for s in self._free.get((slot.day, slot.time), []) if s >= slot.party_size]
        return fitting[0] if fitting else None

    def check(self, slot: Slot) -> bool:
        with self._lock:
            return self._table_for(slot) is not None

    def book(self, slot: Slot, phone_last4: str, call_id: str) -> Booking | None:
        """Take the smallest fitting table and issue the next reference; None if full."""
        with self._lock:
            seats = self._table_for(slot)
            if seats is None:
                return None
            self._free[(slot.day, slot.time)].remove(seats)
            booking = Booking(str(self._next_reference), slot, seats, phone_last4, call_id)
            self._next_reference += 1
            self._bookings.append(booking)
            return booking

    def bookings(self) -> tuple[Booking, ...]:
        with self._lock:
            return tuple(self._bookings)

    # -- the tools, on this restaurant ---------------------------------------------------

    def check_availability(
        self, context: ToolContext, arguments: Mapping[str, Any]
    ) -> dict[str, Any]:
        try:
            slot = parse_slot(arguments)
        except BadArgument as bad:
            return {"error": str(bad)}
        available = self.check(slot)
        context.logger.info("table_checked", available=available, **slot.describe())
        return {"available": available, **slot.describe()}

    def make_booking(self, context: ToolContext, arguments: Mapping[str, Any]) -> dict[str, Any]:
        try:
            slot = parse_slot(arguments)
            phone_last4 = parse_phone_last4(arguments)
        except BadArgument as bad:
            return {"error": str(bad)}
        booking = self.book(slot, phone_last4, context.call_id)
        if booking is None:
            context.logger.info("table_not_booked", **slot.describe())
            return {"available": False, "error": "no free table for that party", **slot.describe()}
        # The phone digits are the caller's personal data: not logged.
        context.logger.info("table_booked", reference=booking.reference, **slot.describe())
        return {"reference": booking.reference, **slot.describe()}


RESTAURANT = Restaurant()
"""The one restaurant of this process, shared by every call."""


def check_availability(context: ToolContext, arguments: dict[str, Any]) -> dict[str, Any]:
    """`{"available": bool, "party_size", "day", "time"}`, or `{"error": ...}`."""
    return RESTAURANT.check_availability(context, arguments)


def make_booking(context: ToolContext, arguments: dict[str, Any]) -> dict[str, Any]:
    """`{"reference": "1042", "party_size", "day", "time"}`; `{"available": false, ...}`
    when no table fits any more; `{"error": ...}` for bad arguments."""
    return RESTAURANT.make_booking(context, arguments)
