"""The staff PIN policy: one check for every way a PIN is set (CLI, API, demo)."""

from __future__ import annotations

import secrets
from itertools import pairwise
from typing import Final

from qcall.errors import BadRequest

# 6 digits at least (a million PINs against five tries per quarter hour); 8 at most, the longest
# PIN a QBus keypad can send, so every account can also log in at its window's keypad.
PIN_MIN_DIGITS: Final = 6
PIN_MAX_DIGITS: Final = 8
# Well-known PINs that are not caught by the pattern rules below (keypad columns and diagonals,
# mirrored runs, pairs, "I love you" numbers).
COMMON_PINS: Final = frozenset(
    {
        "112233",
        "123321",
        "147258",
        "147852",
        "159357",
        "159753",
        "258369",
        "321123",
        "369258",
        "520131",
        "5201314",
        "13145200",
        "11223344",
    }
)


def pin_problem(staff_id: str, pin: str) -> tuple[str, str] | None:
    """Why a PIN may not be used, as ``(english, chinese)``; None when it is acceptable."""
    if not pin.isascii() or not pin.isdigit():
        return ("the PIN must be digits only", "密码只能由数字组成")
    if not PIN_MIN_DIGITS <= len(pin) <= PIN_MAX_DIGITS:
        return (
            f"the PIN must have {PIN_MIN_DIGITS} to {PIN_MAX_DIGITS} digits",
            f"密码须为 {PIN_MIN_DIGITS} 至 {PIN_MAX_DIGITS} 位数字",
        )
    digits = [int(c) for c in pin]
    steps = {(b - a) % 10 for a, b in pairwise(digits)}
    id_digits = "".join(c for c in staff_id if c.isdigit())
    if (
        _repeats_short_pattern(pin)
        or steps in ({1}, {9})
        or pin in COMMON_PINS
        or pin in (staff_id, staff_id[::-1])
        or (len(id_digits) >= PIN_MIN_DIGITS // 2 and id_digits in pin)
    ):
        return (
            (
                "this PIN is too easy to guess (repeated or consecutive digits, a well-known PIN"
                " or the staff id); choose another"
            ),
            "密码过于简单（重复或连续数字、常见密码或含工号），请另选",
        )
    return None


def _repeats_short_pattern(pin: str) -> bool:
    """000000, 121212, 123123: the PIN is a block of at most three digits repeated."""
    return any(pin == (pin[:size] * len(pin))[: len(pin)] for size in (1, 2, 3))


def check_pin_policy(staff_id: str, pin: str) -> None:
    """Refuse a PIN that breaks the policy with a bilingual :class:`BadRequest`."""
    problem = pin_problem(staff_id, pin)
    if problem is not None:
        raise BadRequest(problem[0], problem[1], code="weak_pin")


def generate_pin(staff_id: str, digits: int = PIN_MIN_DIGITS) -> str:
    """A random PIN that meets the policy (for the demo and first-time accounts)."""
    while True:
        pin = "".join(secrets.choice("0123456789") for _ in range(digits))
        if pin_problem(staff_id, pin) is None:
            return pin
