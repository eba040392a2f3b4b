"""The demo connector keeps each write's idempotency key in the ERP document and finds it again.

`find_write` is what the agent asks after a crash between the ERP commit and its journal update;
it must find exactly what the write created, and nothing for a write that never committed. Runs
on every backend of the contract suite (`conftest.BACKENDS`).
"""

from __future__ import annotations

from typing import Any

import pytest
from sqlalchemy.dialects import mssql

from agent.connectors.base import CallContext, InsufficientStock, Unsupported
from agent.connectors.demo import DemoSession
from agent.connectors.demo.keys import (
    CUSTOMER_KEY_WIDTH,
    ORDER_KEY_WIDTH,
    customer_id_by_key,
    key_token,
    order_id_by_key,
)
from protocol.operations.catalogue import CATALOGUE
from protocol.operations.customers import Customer
from protocol.operations.orders import Order
from tests.contract.conftest import ErpDb


def _run(session: DemoSession, operation: str, key: str | None, **args: Any) -> Any:
    model = CATALOGUE[operation].args.model_validate(args)
    return session.execute(operation, model, CallContext(operation, key))


def _sku(db: ErpDb) -> str:
    row = db.one(
        "SELECT tw_Symbol FROM tw__Towar JOIN tw_Stan ON st_TowId = tw_Id "
        "JOIN sl_Magazyn ON mag_Id = st_MagId AND mag_Symbol = 'MAG' "
        "WHERE tw_Zablokowany = 0 AND st_Stan - st_StanRez >= ? LIMIT 1",
        db.stored_money(10),
    )
    return str(row[0])


def _order_args(db: ErpDb, external: str, quantity: str = "2") -> dict[str, Any]:
    return {
        "external_number": external,
        "customer": {"id": "1"},
        "warehouse": "MAG",
        "lines": [{"sku": _sku(db), "quantity": quantity}],
    }


def test_order_key_is_in_the_document_and_found_again(session: DemoSession, db: ErpDb) -> None:
    key = "erpkid_x:order-1"
    order = _run(session, "orders.create", key, **_order_args(db, "SHOP-FW-1"))
    stored = db.one(
        "SELECT dok_TransakcjaSymbol, dok_NrPelnyOryg FROM dok__Dokument WHERE dok_Id = ?",
        int(order.id),
    )
    assert stored == (key_token(key, ORDER_KEY_WIDTH), "SHOP-FW-1")
    assert len(stored[0]) == ORDER_KEY_WIDTH
    found = session.find_write("orders.create", key)
    assert isinstance(found, Order)
    assert found == order
    assert session.find_write("orders.create", "erpkid_x:order-2") is None


def test_customer_key_is_in_the_record_and_found_again(session: DemoSession, db: ErpDb) -> None:
    key = "erpkid_x:customer-1"
    customer = _run(session, "customers.create", key, name="Find Write Sp. z o.o.")
    stored = db.one("SELECT kh_Pole8 FROM kh__Kontrahent WHERE kh_Id = ?", int(customer.id))[0]
    assert stored == key_token(key, CUSTOMER_KEY_WIDTH)
    found = session.find_write("customers.create", key)
    assert isinstance(found, Customer)
    assert found == customer
    assert session.find_write("customers.create", "erpkid_x:other") is None


def test_a_refused_write_leaves_no_key(session: DemoSession, db: ErpDb) -> None:
    """The key goes in with the document, in one transaction: no document, no key."""
    key = "erpkid_x:too-much"
    with pytest.raises(InsufficientStock):
        _run(session, "orders.create", key, **_order_args(db, "SHOP-FW-2", "99999999"))
    token = key_token(key, ORDER_KEY_WIDTH)
    assert (
        db.one("SELECT COUNT(*) FROM dok__Dokument WHERE dok_TransakcjaSymbol = ?", token)[0] == 0
    )
    assert session.find_write("orders.create", key) is None


def test_long_keys_fit_the_columns(session: DemoSession, db: ErpDb) -> None:
    key = "erpkid_x:" + "k" * 246  # 255 characters, the protocol's limit
    order = _run(session, "orders.create", key, **_order_args(db, "SHOP-FW-3"))
    assert session.find_write("orders.create", key) == order
    assert session.find_write("orders.create", key[:-1] + "j") is None


def test_a_write_without_a_key_stores_none(session: DemoSession, db: ErpDb) -> None:
    order = _run(session, "orders.create", None, **_order_args(db, "SHOP-FW-4"))
    stored = db.one(
        "SELECT dok_TransakcjaSymbol FROM dok__Dokument WHERE dok_Id = ?", int(order.id)
    )[0]
    assert stored is None


def test_other_operations_cannot_be_looked_up(session: DemoSession) -> None:
    with pytest.raises(Unsupported):
        session.find_write("customers.get", "k")


def test_key_tokens_are_stable_and_distinct() -> None:
    assert key_token("a", 30) == key_token("a", 30)
    assert key_token("a", 30) != key_token("b", 30)
    assert key_token("a", 50).startswith(key_token("a", 30))
    assert len(key_token("a", 50)) == 43  # all of SHA-256, unpadded base64url


def test_lookups_compile_for_sql_server_with_bound_parameters() -> None:
    for stmt in (order_id_by_key("k"), customer_id_by_key("k")):
        compiled = stmt.compile(dialect=mssql.dialect())  # type: ignore[no-untyped-call]
        sql = str(compiled)
        assert "dok_TransakcjaSymbol" in sql or "kh_Pole8" in sql
        assert key_token("k", ORDER_KEY_WIDTH) not in sql  # bound, never inlined
