"""Routing a dialled number: first match in file order, separators ignored, else the default."""

from __future__ import annotations

import pytest

from telephony_agent.agent import (
    DEFAULT_PROFILE_NAME,
    Profile,
    ProfileBook,
    ProfileDefaults,
    normalise_number,
)

from .support import DEFAULTS, parse

FILE = r"""
[[profiles]]
name = "booking"
numbers = ["booking", "+7 (495) 123-45-67"]

[[profiles]]
name = "moscow"
match = '^\+7495\d{7}$'

[[profiles]]
name = "also-booking"
numbers = ["booking", "100"]

[[profiles]]
name = "internal"
match = '\d{3}'
"""


@pytest.fixture
def book() -> ProfileBook:
    return ProfileBook.build(parse(FILE), DEFAULTS)


@pytest.mark.parametrize(
    ("number", "expected"),
    [
        ("booking", "booking"),  # also listed by also-booking: the first table wins
        ("+74951234567", "booking"),  # written with separators in the file
        ("+7 (495) 123-45-67", "booking"),
        ("+7.495.123.45.67", "booking"),
        ("+74957654321", "moscow"),
        ("+7 495 765-43-21", "moscow"),  # the regex also sees the number without separators
        ("100", "also-booking"),  # listed before the regex of internal
        ("200", "internal"),
        ("2000", DEFAULT_PROFILE_NAME),  # fullmatch: '\d{3}' does not match a prefix
        ("x200", DEFAULT_PROFILE_NAME),
        ("74951234567", DEFAULT_PROFILE_NAME),  # a missing "+" is a different number
        ("Booking", DEFAULT_PROFILE_NAME),
        ("", DEFAULT_PROFILE_NAME),
    ],
)
def test_first_match_wins(book: ProfileBook, number: str, expected: str) -> None:
    assert book.route(number).name == expected


@pytest.mark.parametrize(
    ("number", "line"),
    [
        ("booking", "booking -> profile 'booking' (numbers)"),
        (
            "+74951234567",
            "+74951234567 -> profile 'booking' (numbers, '+7 (495) 123-45-67' without separators)",
        ),
        ("+74957654321", r"+74957654321 -> profile 'moscow' (match '^\+7495\d{7}$')"),
        (
            "+7 495 765-43-21",
            r"+7 495 765-43-21 -> profile 'moscow' (match '^\+7495\d{7}$' without separators)",
        ),
        ("200", r"200 -> profile 'internal' (match '\d{3}')"),
        ("999999", "999999 -> profile 'default' (default)"),
    ],
)
def test_explain_says_who_and_why(book: ProfileBook, number: str, line: str) -> None:
    assert book.explain(number) == line
    assert book.decide(number).profile is book.route(number)


def test_without_a_marked_default_the_agent_settings_answer(book: ProfileBook) -> None:
    default = book.default
    assert default == Profile.from_defaults(DEFAULTS)
    assert default.name == "default" and default.is_default
    assert default.instructions == DEFAULTS.instructions
    assert default.voice == "marina" and default.max_duration_s == 600.0
    assert default.greeting == DEFAULTS.greeting
    assert default.tools is None and default.numbers == () and default.match is None
    assert book.by_name("default") is default
    assert default not in book.profiles
    assert [p.name for p in book.profiles] == ["booking", "moscow", "also-booking", "internal"]


def test_a_marked_default_answers_unmatched_numbers_and_keeps_its_own_numbers() -> None:
    profiles = parse(
        '[[profiles]]\nname = "a"\nnumbers = ["1"]\n'
        '[[profiles]]\nname = "front-desk"\ndefault = true\nnumbers = ["2"]\n'
    )
    book = ProfileBook.build(profiles, DEFAULTS)
    assert book.default is profiles[1]
    assert book.route("2") is profiles[1]
    assert book.explain("2") == "2 -> profile 'front-desk' (numbers)"
    assert book.explain("3") == "3 -> profile 'front-desk' (default)"
    assert book.route("1") is profiles[0]
    assert book.by_name("default") is None
    assert book.profiles == profiles


def test_a_profile_without_numbers_or_match_is_reachable_only_by_name() -> None:
    profiles = parse('[[profiles]]\nname = "vip"\n[[profiles]]\nname = "any"\nmatch = ".*"\n')
    book = ProfileBook.build(profiles, DEFAULTS)
    assert book.route("vip").name == "any"
    assert book.by_name("vip") is profiles[0]
    assert book.by_name("nobody") is None


def test_empty_book_routes_everything_to_the_agent_profile() -> None:
    book = ProfileBook.build((), ProfileDefaults(instructions="Hi"))
    assert book.profiles == ()
    assert book.route("+15551234567").instructions == "Hi"
    assert book.explain("x") == "x -> profile 'default' (default)"


def test_build_refuses_two_defaults() -> None:
    a = Profile(name="a", instructions="x", is_default=True)
    b = Profile(name="b", instructions="x", is_default=True)
    with pytest.raises(ValueError, match="more than one default profile: 'a', 'b'"):
        ProfileBook.build((a, b), DEFAULTS)


def test_book_refuses_duplicate_names() -> None:
    a = Profile(name="default", instructions="x")
    with pytest.raises(ValueError, match="two profiles are named 'default'"):
        ProfileBook((a,), Profile.from_defaults(DEFAULTS))


def test_normalise_number_drops_only_visual_separators() -> None:
    assert normalise_number("+7 (495) 123-45-67") == "+74951234567"
    assert normalise_number("8.800\t555") == "8800555"
    assert normalise_number("*100#booking") == "*100#booking"
