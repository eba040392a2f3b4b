"""Check digits of Polish tax ids (NIP) and EAN-13 barcodes.

Shops type these by hand; a wrong digit caught at the relay costs nothing, one caught by the ERP
after a round trip costs a support ticket.
"""

from __future__ import annotations

_NIP_WEIGHTS = (6, 5, 7, 2, 3, 4, 5, 6, 7)


def normalize_nip(value: str) -> str:
    """Strip separators and an optional ``PL`` prefix: ``PL 526-000-12-46`` → ``5260001246``."""
    text = value.strip().upper()
    if text.startswith("PL"):
        text = text[2:]
    return "".join(ch for ch in text if ch not in " -")


def nip_check_digit(first_nine: str) -> int | None:
    """The tenth digit for nine leading digits, or None when no valid NIP starts with them."""
    digit = sum(int(d) * w for d, w in zip(first_nine, _NIP_WEIGHTS, strict=True)) % 11
    return None if digit == 10 else digit


def is_valid_nip(digits: str) -> bool:
    if len(digits) != 10 or not digits.isascii() or not digits.isdigit():
        return False
    return nip_check_digit(digits[:9]) == int(digits[9])


def ean13_check_digit(first_twelve: str) -> int:
    total = sum(int(d) * (3 if i % 2 else 1) for i, d in enumerate(first_twelve))
    return (10 - total % 10) % 10


def is_valid_ean13(code: str) -> bool:
    if len(code) != 13 or not code.isascii() or not code.isdigit():
        return False
    return ean13_check_digit(code[:12]) == int(code[12])
