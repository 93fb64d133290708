"""The check digits that tell a real card or ID number from a run of digits."""

from __future__ import annotations

import datetime

# GB 11643-1999: weights of the first 17 digits of a resident identity number
ID_WEIGHTS = (7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2)
ID_CHECK = "10X98765432"


def digits_of(text: str) -> str:
    return "".join(ch for ch in text if ch.isdigit() or ch in "Xx").upper()


def luhn_valid(number: str) -> bool:
    digits = [int(ch) for ch in number if ch.isdigit()]
    if len(digits) < 12:
        return False
    total = 0
    for i, digit in enumerate(reversed(digits)):
        if i % 2:
            digit *= 2
            digit -= 9 if digit > 9 else 0
        total += digit
    return total % 10 == 0


def cn_id_check_char(first17: str) -> str:
    return ID_CHECK[sum(int(d) * w for d, w in zip(first17, ID_WEIGHTS, strict=True)) % 11]


def cn_resident_id_valid(number: str) -> bool:
    """18 characters, a real birth date at 7-14 and the GB 11643 check character last."""
    value = digits_of(number)
    if len(value) != 18 or not value[:17].isdigit():
        return False
    try:
        datetime.date(int(value[6:10]), int(value[10:12]), int(value[12:14]))
    except ValueError:
        return False
    return cn_id_check_char(value[:17]) == value[17]
