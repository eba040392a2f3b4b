from __future__ import annotations

import re

import pytest
from hypothesis import given
from hypothesis import strategies as st

from relay import secrets
from relay.secrets import SecretKind

AGENT = SecretKind.AGENT_TOKEN
KEY = SecretKind.API_KEY


@pytest.mark.parametrize(("kind", "prefix"), [(AGENT, "erpa_"), (KEY, "erpk_")])
def test_generated_secret_has_the_documented_shape(kind: SecretKind, prefix: str) -> None:
    generated = secrets.generate(kind)
    assert generated.plaintext.startswith(prefix)
    assert re.fullmatch(r"[a-z0-9]{12}", generated.public_id)
    assert re.fullmatch(rf"{prefix}{generated.public_id}_[A-Za-z0-9]{{43}}", generated.plaintext)


def test_generated_secret_round_trips_through_parse_and_verify() -> None:
    generated = secrets.generate(AGENT)
    parsed = secrets.parse(generated.plaintext, AGENT)
    assert parsed is not None
    public_id, secret = parsed
    assert public_id == generated.public_id
    assert secrets.verify(secret, generated.secret_hash)
    assert generated.secret_hash == secrets.hash_secret(secret)
    assert secret not in generated.secret_hash


def test_each_generation_is_unique() -> None:
    made = [secrets.generate(KEY) for _ in range(200)]
    assert len({g.public_id for g in made}) == 200
    assert len({g.plaintext for g in made}) == 200


def test_repr_does_not_show_the_plaintext() -> None:
    generated = secrets.generate(KEY)
    assert generated.plaintext not in repr(generated)


def test_hash_is_sha256_hex() -> None:
    assert (
        secrets.hash_secret("abc")
        == "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
    )


def test_token_is_not_accepted_as_a_key_and_vice_versa() -> None:
    token = secrets.generate(AGENT).plaintext
    key = secrets.generate(KEY).plaintext
    assert secrets.parse(token, KEY) is None
    assert secrets.parse(key, AGENT) is None


def test_verify_rejects_a_wrong_secret_and_odd_hashes() -> None:
    generated = secrets.generate(AGENT)
    parsed = secrets.parse(generated.plaintext, AGENT)
    assert parsed is not None
    _, secret = parsed
    other = secrets.generate(AGENT)
    assert not secrets.verify(secret, other.secret_hash)
    assert not secrets.verify(
        secret[:-1] + ("a" if secret[-1] != "a" else "b"), generated.secret_hash
    )
    assert not secrets.verify(secret, "")
    assert not secrets.verify(secret, "é" * 64)
    assert not secrets.verify(secret, generated.secret_hash.upper())


@pytest.mark.parametrize(
    "garbage",
    [
        "",
        "erpa_",
        "Bearer erpa_abcdefghijkl_" + "a" * 43,
        "erpa_abcdefghijkl_" + "a" * 42,
        "erpa_abcdefghijkl_" + "a" * 44,
        "erpa_ABCDEFGHIJKL_" + "a" * 43,
        "erpa_abcdefghijk_" + "a" * 44,
        "erpa_abcdefghijkl_" + "a" * 42 + "-",
        "erpa_abcdefghijkl_" + "a" * 42 + "\n",
        "erpa_abcdefghijkl-" + "a" * 43,
        "erpx_abcdefghijkl_" + "a" * 43,
        "erpa_abcdefghijkl_" + "é" * 43,
        "erpa_abcdefghijkl_" + "\uff41" * 43,
        "x" * 10_000_000,
        None,
        42,
        b"erpa_abcdefghijkl_" + b"a" * 43,
    ],
)
def test_parse_rejects_garbage(garbage: object) -> None:
    assert secrets.parse(garbage, AGENT) is None


def test_parse_accepts_a_well_formed_token() -> None:
    assert secrets.parse("erpa_abcdefghijkl_" + "a" * 43, AGENT) == ("abcdefghijkl", "a" * 43)


@given(st.text(max_size=100))
def test_parse_never_raises(text: str) -> None:
    assert secrets.parse(text, AGENT) is None or text.startswith("erpa_")
    assert secrets.parse(text, KEY) is None or text.startswith("erpk_")
