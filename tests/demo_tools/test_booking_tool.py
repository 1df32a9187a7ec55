"""The demo restaurant: its rules, its answers to bad arguments, and parallel bookings."""

from __future__ import annotations

import threading
import time
from typing import Any

import pytest
from jsonschema import Draft202012Validator

from telephony_agent.demo_tools import booking
from telephony_agent.demo_tools.booking import (
    CHECK_AVAILABILITY_PARAMETERS,
    MAKE_BOOKING_PARAMETERS,
    Restaurant,
)

SLOT = {"party_size": 2, "day": "tomorrow", "time": "19:00"}


class FakeLogger:
    def __init__(self) -> None:
        self.lines: list[tuple[str, dict[str, Any]]] = []
        self._lock = threading.Lock()

    def info(self, event: str, **fields: Any) -> None:
        with self._lock:
            self.lines.append((event, fields))


class Context:
    def __init__(self, call_id: str = "call-1") -> None:
        self.call_id = call_id
        self.profile = "booking"
        self.caller = "sip:caller@127.0.0.1"
        self.dialled = "sip:agent@127.0.0.1"
        self.variables: dict[str, str] = {}
        self.logger = FakeLogger()


def test_tomorrow_at_seven_is_free_for_up_to_six() -> None:
    restaurant = Restaurant()
    for size in (1, 2, 6):
        answer = restaurant.check_availability(Context(), {**SLOT, "party_size": size})
        assert answer == {"available": True, "party_size": size, "day": "tomorrow", "time": "19:00"}
    answer = restaurant.check_availability(Context(), {**SLOT, "party_size": 7})
    assert answer["available"] is False


@pytest.mark.parametrize(
    ("day", "time"),
    [("tomorrow", "20:00"), ("today", "19:00"), ("tomorrow", "15:00"), ("tomorrow", "19:30")],
)
def test_taken_and_closed_slots_are_not_available(day: str, time: str) -> None:
    answer = Restaurant().check_availability(Context(), {**SLOT, "day": day, "time": time})
    assert answer == {"available": False, "party_size": 2, "day": day, "time": time}


def test_values_come_back_normalised() -> None:
    answer = Restaurant().check_availability(
        Context(), {"party_size": 3, "day": " Tomorrow", "time": "21:00 "}
    )
    assert answer == {"available": True, "party_size": 3, "day": "tomorrow", "time": "21:00"}


def test_a_booking_gets_the_next_reference_and_takes_a_table() -> None:
    restaurant = Restaurant()
    context = Context()
    first = restaurant.make_booking(context, {**SLOT, "phone_last4": "4512"})
    assert first == {"reference": "1042", **SLOT}
    second = restaurant.make_booking(context, {**SLOT, "party_size": 4, "phone_last4": "0001"})
    assert second["reference"] == "1043"
    # The 2- and 4-seat tables are gone: a couple now gets the 6-seat one, then nothing.
    assert restaurant.make_booking(context, {**SLOT, "phone_last4": "0002"})["reference"] == "1044"
    full = restaurant.make_booking(context, {**SLOT, "phone_last4": "0003"})
    assert full["available"] is False and "reference" not in full
    assert restaurant.check_availability(context, SLOT)["available"] is False
    assert [b.seats for b in restaurant.bookings()] == [2, 4, 6]
    assert [b.phone_last4 for b in restaurant.bookings()] == ["4512", "0001", "0002"]


def test_the_phone_digits_are_not_logged() -> None:
    context = Context()
    Restaurant().make_booking(context, {**SLOT, "phone_last4": "4512"})
    assert context.logger.lines
    assert "4512" not in repr(context.logger.lines)
    assert ("table_booked", {"reference": "1042", **SLOT}) in context.logger.lines


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        ({**SLOT, "party_size": 0}, "party_size = 0: expected a whole number from 1 to 12"),
        ({**SLOT, "party_size": 13}, "party_size = 13: expected"),
        ({**SLOT, "party_size": "2"}, "party_size = '2': expected"),
        ({**SLOT, "party_size": True}, "party_size = True: expected"),
        ({"day": "tomorrow", "time": "19:00"}, "party_size = None: expected"),
        ({**SLOT, "day": "friday"}, "day = 'friday': expected today or tomorrow"),
        ({**SLOT, "day": 3}, "day = 3: expected today or tomorrow"),
        ({**SLOT, "time": "7pm"}, "time = '7pm': expected 24-hour HH:MM"),
        ({**SLOT, "time": "24:00"}, "time = '24:00': expected"),
        ({**SLOT, "time": None}, "time = None: expected"),
    ],
)
def test_bad_arguments_are_named(arguments: dict[str, Any], message: str) -> None:
    restaurant = Restaurant()
    answer = restaurant.check_availability(Context(), arguments)
    assert list(answer) == ["error"] and answer["error"].startswith(message)
    booked = restaurant.make_booking(Context(), {**arguments, "phone_last4": "1234"})
    assert list(booked) == ["error"] and booked["error"].startswith(message)
    assert restaurant.bookings() == ()


@pytest.mark.parametrize("digits", ["123", "12345", "12a4", 1234, None])
def test_the_phone_digits_must_be_four(digits: Any) -> None:
    restaurant = Restaurant()
    answer = restaurant.make_booking(Context(), {**SLOT, "phone_last4": digits})
    assert answer == {"error": "phone_last4: expected exactly four digits"}
    assert restaurant.bookings() == ()


def test_parallel_bookings_never_share_a_table_or_a_reference(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    restaurant = Restaurant()
    find_table = Restaurant._table_for

    def slow_find_table(self: Restaurant, slot: booking.Slot) -> int | None:
        seats = find_table(self, slot)
        time.sleep(0.0005)  # widens the window between finding a table and taking it
        return seats

    monkeypatch.setattr(Restaurant, "_table_for", slow_find_table)
    free_tables = sum(len(seats) for seats in booking.OPENING_TABLES.values())
    requests = [
        {"party_size": 2, "day": day, "time": time, "phone_last4": f"{i:04d}"}
        for i, (day, time) in enumerate(booking.OPENING_TABLES)
    ]
    workers = 8
    ready = threading.Barrier(workers)
    answers: list[dict[str, Any]] = []
    lock = threading.Lock()

    def worker(n: int) -> None:
        ready.wait()  # all threads book at once, each every slot (three times over)
        for arguments in requests * 3:
            answer = restaurant.make_booking(Context(f"call-{n}"), arguments)
            with lock:
                answers.append(answer)

    threads = [threading.Thread(target=worker, args=(n,)) for n in range(workers)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    references = [a["reference"] for a in answers if "reference" in a]
    assert len(answers) == workers * len(requests) * 3
    assert len(references) == free_tables == len(restaurant.bookings())
    assert sorted(references) == [str(1042 + i) for i in range(free_tables)]
    assert all(a.get("available") is False for a in answers if "reference" not in a)


def test_the_module_functions_share_one_restaurant(monkeypatch: pytest.MonkeyPatch) -> None:
    fresh = Restaurant()
    monkeypatch.setattr(booking, "RESTAURANT", fresh)
    assert booking.check_availability(Context(), SLOT)["available"] is True
    assert booking.make_booking(Context(), {**SLOT, "phone_last4": "4512"})["reference"] == "1042"
    assert [b.call_id for b in fresh.bookings()] == ["call-1"]


def test_the_parameters_are_valid_json_schema_and_match_the_rules() -> None:
    Draft202012Validator.check_schema(CHECK_AVAILABILITY_PARAMETERS)
    Draft202012Validator.check_schema(MAKE_BOOKING_PARAMETERS)
    check = Draft202012Validator(CHECK_AVAILABILITY_PARAMETERS)
    book = Draft202012Validator(MAKE_BOOKING_PARAMETERS)
    assert check.is_valid(SLOT)
    assert book.is_valid({**SLOT, "phone_last4": "4512"})
    assert not book.is_valid(SLOT)
    for bad in ({**SLOT, "party_size": 13}, {**SLOT, "day": "friday"}, {**SLOT, "time": "7pm"}):
        assert not check.is_valid(bad)
        assert "error" in Restaurant().check_availability(Context(), bad)
