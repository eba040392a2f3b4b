"""The operation catalogue: typed arguments and results, and the wire rules they enforce."""

from __future__ import annotations

import json
import re
from decimal import Decimal
from pathlib import Path
from typing import Any

import orjson
import pydantic
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from protocol.operations import CATALOGUE, WRITE_OPERATIONS, Operation
from protocol.operations.customers import CustomerRef, NewCustomer
from protocol.operations.invoices import InvoiceListArgs
from protocol.operations.orders import MAX_LINES, CreateOrderArgs, OrderLineIn, OrderRef
from protocol.operations.products import MAX_BATCH, PricesArgs, ProductRef, StockArgs
from protocol.operations.types import Lookup, Model

DOCS = Path(__file__).resolve().parents[2] / "docs" / "operations.md"

EXPECTED_OPERATIONS = [
    "ping",
    "operations.status",
    "customers.get",
    "customers.search",
    "customers.balance",
    "customers.create",
    "products.get",
    "products.search",
    "products.stock",
    "products.prices",
    "orders.create",
    "orders.get",
    "invoices.list",
    "orders.update_status",
    "orders.cancel",
    "payments.register",
    "orders.fulfil",
    "returns.create",
    "complaints.create",
    "transfers.create",
    "orders.ship_to_store",
    "orders.picked_up",
    "products.availability",
    "quotes.create",
    "customers.terms",
    "reports.sales",
]
OPERATIONS: list[Operation] = list(CATALOGUE.values())


def ids(op: Operation) -> str:
    return op.name


def line(**extra: Any) -> dict[str, Any]:
    return {"sku": "KAW-001", "quantity": "2", **extra}


def order(**extra: Any) -> dict[str, Any]:
    return {
        "external_number": "SHOP-2026-000123",
        "customer": {"nip": "5260001246"},
        "lines": [line()],
        **extra,
    }


def refused(model: type[pydantic.BaseModel], data: Any) -> pydantic.ValidationError:
    with pytest.raises(pydantic.ValidationError) as info:
        model.model_validate(data)
    return info.value


# --- the catalogue --------------------------------------------------------------------------


def test_catalogue_lists_the_v1_operations_in_order() -> None:
    assert list(CATALOGUE) == EXPECTED_OPERATIONS
    assert all(name == op.name for name, op in CATALOGUE.items())


def test_writes_are_exactly_the_operations_that_change_the_erp() -> None:
    assert {
        "customers.create",
        "orders.create",
        "orders.update_status",
        "orders.cancel",
        "payments.register",
        "orders.fulfil",
        "returns.create",
        "complaints.create",
        "transfers.create",
        "orders.ship_to_store",
        "orders.picked_up",
        "quotes.create",
    } == WRITE_OPERATIONS
    assert {op.name for op in OPERATIONS if op.writes} == WRITE_OPERATIONS


def test_catalogue_is_read_only() -> None:
    with pytest.raises(TypeError):
        CATALOGUE["evil"] = OPERATIONS[0]  # type: ignore[index]


@pytest.mark.parametrize("op", OPERATIONS, ids=ids)
def test_every_operation_has_models_with_json_schema(op: Operation) -> None:
    assert op.summary
    assert op.group == op.name.split(".")[0]
    for model in (op.args, op.result):
        assert issubclass(model, Model)
        assert model.model_config.get("extra") == "forbid"
        for mode in ("validation", "serialization"):
            schema = model.model_json_schema(mode=mode)  # type: ignore[arg-type]
            assert schema["type"] == "object"
            json.dumps(schema)  # plain JSON, publishable in OpenAPI


@pytest.mark.parametrize("op", OPERATIONS, ids=ids)
def test_args_refuse_unknown_fields(op: Operation) -> None:
    errors = refused(op.args, {"surprise": 1}).errors()
    assert any(e["type"] == "extra_forbidden" for e in errors)


def test_decimal_fields_are_strings_in_the_schema() -> None:
    props = OrderLineIn.model_json_schema()["properties"]
    assert props["quantity"]["type"] == "string"
    price = props["price_net"]["anyOf"][0]
    assert price["type"] == "string"
    assert "pattern" in price


# --- decimals -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "expected"),
    [("2.5", Decimal("2.5")), (2, Decimal(2)), ("0.0001", Decimal("0.0001")), ("1000", 1000)],
)
def test_decimal_accepts_strings_and_integers(value: Any, expected: Any) -> None:
    assert OrderLineIn.model_validate(line(quantity=value)).quantity == Decimal(expected)


@pytest.mark.parametrize("value", [2.5, 2.0, 0.1, 1e3, True, None, [], "abc", "NaN", "Infinity"])
def test_decimal_refuses_floats_and_junk(value: Any) -> None:
    refused(OrderLineIn, line(quantity=value))


def test_decimal_refuses_json_floats_from_the_wire() -> None:
    for raw in (b'{"sku": "A", "quantity": 2.5}', b'{"sku": "A", "quantity": 2.0}'):
        with pytest.raises(pydantic.ValidationError, match="as strings"):
            OrderLineIn.model_validate_json(raw)
        with pytest.raises(pydantic.ValidationError, match="as strings"):
            OrderLineIn.model_validate(orjson.loads(raw))
    assert OrderLineIn.model_validate_json(b'{"sku": "A", "quantity": 2}').quantity == 2


def test_decimal_places_are_limited() -> None:
    OrderLineIn.model_validate(line(price_net="19.9999"))
    refused(OrderLineIn, line(price_net="19.99999"))
    refused(OrderLineIn, line(quantity="1" * 20))


def test_decimals_serialise_as_strings() -> None:
    parsed = OrderLineIn.model_validate(line(quantity="2.50", price_net="19.99"))
    dumped = parsed.model_dump(mode="json")
    assert dumped["quantity"] == "2.50"
    assert dumped["price_net"] == "19.99"
    assert orjson.loads(parsed.model_dump_json())["quantity"] == "2.50"
    # Python mode keeps Decimal for the connector.
    assert parsed.model_dump()["quantity"] == Decimal("2.50")


@pytest.mark.parametrize("value", ["1E+3", "1e3", "+3", "1_000", " ", "0x10"])
def test_decimals_must_be_plain_notation(value: str) -> None:
    """The schema publishes a plain-decimal pattern; validation must not be looser."""
    with pytest.raises(pydantic.ValidationError):
        OrderLineIn.model_validate(line(quantity=value))


# --- lookups and identifiers ----------------------------------------------------------------

LOOKUPS: list[tuple[type[Lookup], dict[str, Any]]] = [
    (CustomerRef, {"id": "1042", "symbol": "KOWALSKI", "nip": "5260001246"}),
    (ProductRef, {"id": "7", "sku": "KAW-001", "ean": "5901234123457"}),
    (OrderRef, {"id": "1", "number": "ZK 12/2026", "external_number": "SHOP-1"}),
]


@pytest.mark.parametrize(("model", "fields"), LOOKUPS, ids=lambda x: getattr(x, "__name__", ""))
def test_lookups_need_exactly_one_field(model: type[Lookup], fields: dict[str, Any]) -> None:
    for key, value in fields.items():
        assert getattr(model.model_validate({key: value}), key) == value
    refused(model, {})
    refused(model, dict.fromkeys(fields))
    keys = list(fields)
    for i, first in enumerate(keys):
        for second in keys[i + 1 :]:
            with pytest.raises(pydantic.ValidationError, match="exactly one"):
                model.model_validate({first: fields[first], second: fields[second]})


@pytest.mark.parametrize(
    "raw", ["PL 526-000-12-46", "5260001246", "526-000-12-46", " pl5260001246 ", "PL5260001246"]
)
def test_nip_is_normalised(raw: str) -> None:
    assert CustomerRef(nip=raw).nip == "5260001246"
    assert NewCustomer(name="ACME", nip=raw).nip == "5260001246"


@pytest.mark.parametrize(
    "raw", ["5260001247", "526000124", "PL 526-000-12-4", "52600012466", "abcdefghij", ""]
)
def test_invalid_nip_is_refused(raw: str) -> None:
    refused(CustomerRef, {"nip": raw})


def test_ean_check_digit() -> None:
    assert ProductRef(ean="5901234123457").ean == "5901234123457"
    refused(ProductRef, {"ean": "5901234123458"})
    refused(ProductRef, {"ean": "590123412345"})
    refused(ProductRef, {"ean": 5901234123457})


def test_ids_are_strings() -> None:
    assert CustomerRef(id="C20000").id == "C20000"
    refused(CustomerRef, {"id": 1042})
    refused(CustomerRef, {"id": ""})
    refused(CustomerRef, {"id": "x" * 65})


# --- batches, orders, invoices --------------------------------------------------------------


@pytest.mark.parametrize("model", [StockArgs, PricesArgs])
def test_batches_take_up_to_500_skus(model: type[Model]) -> None:
    assert MAX_BATCH == 500
    skus = [f"SKU-{i}" for i in range(500)]
    assert len(model.model_validate({"skus": skus}).skus) == 500  # type: ignore[attr-defined]
    refused(model, {"skus": [*skus, "SKU-500"]})
    refused(model, {"skus": []})
    refused(model, {"skus": [""]})
    refused(model, {"skus": ["x" * 65]})


def test_stock_warehouse_filter() -> None:
    assert StockArgs(skus=["A"], warehouses=["MAG"]).warehouses == ["MAG"]
    refused(StockArgs, {"skus": ["A"], "warehouses": ["M"] * 51})


def test_order_with_existing_customer() -> None:
    args = CreateOrderArgs.model_validate(order())
    assert args.customer == CustomerRef(nip="5260001246")
    assert args.new_customer is None
    assert args.lines[0].quantity == Decimal(2)


def test_order_with_new_customer() -> None:
    data = order(customer=None, new_customer={"name": "Jan Kowalski", "kind": "person"})
    args = CreateOrderArgs.model_validate(data)
    assert args.new_customer is not None
    assert args.new_customer.name == "Jan Kowalski"


@pytest.mark.parametrize(
    "customers",
    [
        {"customer": None},
        {"customer": {"id": "1"}, "new_customer": {"name": "ACME"}},
    ],
)
def test_order_needs_exactly_one_customer(customers: dict[str, Any]) -> None:
    with pytest.raises(pydantic.ValidationError, match="exactly one of: customer, new_customer"):
        CreateOrderArgs.model_validate(order(**customers))


def test_order_lines_limit() -> None:
    assert MAX_LINES == 500
    assert len(CreateOrderArgs.model_validate(order(lines=[line()] * 500)).lines) == 500
    refused(CreateOrderArgs, order(lines=[line()] * 501))
    refused(CreateOrderArgs, order(lines=[]))


@pytest.mark.parametrize("quantity", ["0", "-1", "0.0000", -3])
def test_order_quantity_must_be_positive(quantity: Any) -> None:
    refused(CreateOrderArgs, order(lines=[line(quantity=quantity)]))


@pytest.mark.parametrize(
    "patch",
    [
        {"surprise": True},
        {"lines": [line(discount="10")]},
        {"customer": {"nip": "5260001246", "vip": True}},
        {"external_number": ""},
        {"external_number": "x" * 31},
        {"notes": "x" * 2001},
        {"delivery_method": "x" * 51},
    ],
)
def test_order_refuses_extra_fields_and_long_strings(patch: dict[str, Any]) -> None:
    refused(CreateOrderArgs, order(**patch))


def test_models_are_immutable() -> None:
    args = CreateOrderArgs.model_validate(order())
    with pytest.raises(pydantic.ValidationError):
        args.notes = "changed"  # type: ignore[misc]


def test_new_customer_fields() -> None:
    refused(NewCustomer, {"name": ""})
    refused(NewCustomer, {"name": "ACME", "email": "not-an-email"})
    refused(NewCustomer, {"name": "ACME", "kind": "alien"})
    refused(NewCustomer, {"name": "ACME", "address": {"country": "POL"}})
    assert NewCustomer(name="  ACME  ").name == "ACME"


def test_invoice_date_range() -> None:
    ok = InvoiceListArgs.model_validate(
        {"customer": {"id": "1"}, "date_from": "2026-01-01", "date_to": "2026-01-31"}
    )
    assert ok.limit == 50
    with pytest.raises(pydantic.ValidationError, match="date_from is after date_to"):
        InvoiceListArgs.model_validate(
            {"customer": {"id": "1"}, "date_from": "2026-02-01", "date_to": "2026-01-31"}
        )
    refused(InvoiceListArgs, {"customer": {"id": "1"}, "limit": 201})
    refused(InvoiceListArgs, {"customer": {"id": "1"}, "limit": 0})


# --- any JSON in, a model or ValidationError out --------------------------------------------

json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**63), max_value=2**64)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=20)
    | st.sampled_from(["5260001246", "5901234123457", "2.50", "2026-01-31", "a@b.pl", "PL"]),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children)
    ),
    max_leaves=15,
)


def shaped(model: type[pydantic.BaseModel]) -> st.SearchStrategy[dict[str, Any]]:
    """Objects using the model's own field names, so validation reaches the field validators."""
    return st.dictionaries(st.sampled_from(sorted(model.model_fields) or ["x"]), json_values)


@pytest.mark.parametrize("op", OPERATIONS, ids=ids)
@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_any_json_validates_or_raises_validation_error(op: Operation, data: st.DataObject) -> None:
    value = data.draw(json_values | shaped(op.args))
    try:
        parsed = op.args.model_validate(value)
    except pydantic.ValidationError:
        return
    # Whatever validates serialises to JSON and validates again to the same thing.
    again = op.args.model_validate_json(parsed.model_dump_json())
    assert again == parsed


# --- docs/operations.md ---------------------------------------------------------------------


def _doc_examples() -> dict[str, dict[str, Any]]:
    """The JSON request and response examples under each ``### `name` `` heading."""
    text = DOCS.read_text(encoding="utf-8")
    sections = re.split(r"^### `([a-z._]+)`", text, flags=re.MULTILINE)
    found: dict[str, dict[str, Any]] = {}
    for name, body in zip(sections[1::2], sections[2::2], strict=True):
        blocks = re.findall(r"```json\n(.*?)```", body, flags=re.DOTALL)
        found[name] = {"blocks": [json.loads(b) for b in blocks], "body": body}
    return found


@pytest.mark.skipif(not DOCS.exists(), reason="docs/operations.md not written yet")
def test_docs_cover_every_operation_with_valid_examples() -> None:
    examples = _doc_examples()
    assert list(examples) == EXPECTED_OPERATIONS
    for name, found in examples.items():
        op = CATALOGUE[name]
        request, response = found["blocks"][:2]
        op.args.model_validate(request)
        op.result.model_validate(response)
        for field in op.args.model_fields:
            assert f"`{field}`" in found["body"], f"{name}: argument {field} not documented"
