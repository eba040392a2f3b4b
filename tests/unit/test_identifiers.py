"""Check digits of Polish NIPs and EAN-13 barcodes."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from protocol.operations.identifiers import (
    ean13_check_digit,
    is_valid_ean13,
    is_valid_nip,
    nip_check_digit,
    normalize_nip,
)

VALID_NIPS = ["5260001246", "5260250274", "7740001454", "1132853869", "5213017228", "0000000000"]
VALID_EANS = ["5901234123457", "4006381333931", "0000000000000", "5900000000008", "9780306406157"]

nine_digits = st.text(alphabet="0123456789", min_size=9, max_size=9)
twelve_digits = st.text(alphabet="0123456789", min_size=12, max_size=12)


@pytest.mark.parametrize("nip", VALID_NIPS)
def test_known_valid_nips(nip: str) -> None:
    assert is_valid_nip(nip)


@pytest.mark.parametrize(
    "nip",
    [
        "5260001247",  # wrong check digit
        "526000124",  # too short
        "52600012460",  # too long
        "526000124a",
        "PL5260001246",  # not normalised
        "526-000-12-46",
        "",
        "５２６０００１２４６",  # full-width digits: isdigit() but not ASCII
        "526000124٦",  # Arabic-Indic six
    ],
)
def test_invalid_nips(nip: str) -> None:
    assert not is_valid_nip(nip)


@pytest.mark.parametrize(
    ("raw", "digits"),
    [
        ("PL 526-000-12-46", "5260001246"),
        ("pl5260001246", "5260001246"),
        ("  526 000 12 46 ", "5260001246"),
        ("526-00-01-246", "5260001246"),
        ("5260001246", "5260001246"),
    ],
)
def test_normalize_nip(raw: str, digits: str) -> None:
    assert normalize_nip(raw) == digits
    assert is_valid_nip(normalize_nip(raw))


def test_nip_check_digit() -> None:
    assert nip_check_digit("526000124") == 6
    # 9 * 6 = 54 = 4 * 11 + 10: a check digit of 10 means no valid NIP starts with these digits.
    assert nip_check_digit("900000000") is None
    assert not any(is_valid_nip("900000000" + d) for d in "0123456789")


@settings(max_examples=200, deadline=None)
@given(nine_digits)
def test_generated_nips_validate(prefix: str) -> None:
    check = nip_check_digit(prefix)
    if check is None:
        for digit in "0123456789":
            assert not is_valid_nip(prefix + digit)
    else:
        assert is_valid_nip(prefix + str(check))
        for digit in "0123456789":
            if digit != str(check):
                assert not is_valid_nip(prefix + digit)


@pytest.mark.parametrize("ean", VALID_EANS)
def test_known_valid_eans(ean: str) -> None:
    assert is_valid_ean13(ean)


@pytest.mark.parametrize(
    "ean",
    [
        "5901234123458",
        "590123412345",
        "59012341234570",
        "590123412345X",
        "",
        "５９０１２３４１２３４５７",
    ],
)
def test_invalid_eans(ean: str) -> None:
    assert not is_valid_ean13(ean)


@settings(max_examples=200, deadline=None)
@given(twelve_digits)
def test_generated_eans_validate(prefix: str) -> None:
    check = ean13_check_digit(prefix)
    assert 0 <= check <= 9
    assert is_valid_ean13(prefix + str(check))
    assert not is_valid_ean13(prefix + str((check + 1) % 10))


@settings(max_examples=200, deadline=None)
@given(st.text(max_size=20))
def test_validators_never_raise(value: str) -> None:
    assert isinstance(is_valid_nip(value), bool)
    assert isinstance(is_valid_ean13(value), bool)
    assert isinstance(normalize_nip(value), str)
