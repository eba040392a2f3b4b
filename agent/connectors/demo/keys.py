"""Where the demo ERP keeps the idempotency key of a write, and how it finds it again.

A write handler stores the key's *token* in the document it inserts, inside the same ERP
transaction, so a committed write can always be found after a crash (`DemoSession.find_write`):

- ``orders.create``: ``dok__Dokument.dok_TransakcjaSymbol`` (``varchar(30) NULL``). The name is
  certain (EF Core scaffold of a live Subiekt GT database); reading it as the symbol of the shop
  transaction a document came from is ours (**G**). It is not ``dok_Uwagi`` (notes people read
  and edit) nor ``dok_NrPelnyOryg``, which already holds the shop's own order number.
- ``customers.create`` (and a new customer made by ``orders.create``): ``kh__Kontrahent.kh_Pole8``,
  the last of Subiekt GT's eight customer custom fields (``varchar(50)``, **A**); offices fill
  ``kh_Pole1`` first. A real installation should make the field configurable.

Keys may be 255 characters, the columns are 30 and 50, so the token is the unpadded base64url
SHA-256 of the key cut to the column's width (180 bits at 30 characters).
"""

from __future__ import annotations

import base64
import hashlib
from typing import Any

from sqlalchemy import Select, select

from agent.connectors.demo.schema import DocType, dok__Dokument, kh__Kontrahent

ORDER_KEY_COLUMN = "dok_TransakcjaSymbol"
ORDER_KEY_WIDTH = 30
CUSTOMER_KEY_COLUMN = "kh_Pole8"
CUSTOMER_KEY_WIDTH = 50


def key_token(idempotency_key: str, width: int) -> str:
    """What is stored in the ERP for ``idempotency_key`` in a column ``width`` characters wide."""
    digest = hashlib.sha256(idempotency_key.encode("utf-8")).digest()
    return base64.urlsafe_b64encode(digest).decode("ascii").rstrip("=")[:width]


def order_id_by_key(idempotency_key: str) -> Select[Any]:
    """The id of the ZK written with this key (indexed: ``ix_dok_TransakcjaSymbol``)."""
    token = key_token(idempotency_key, ORDER_KEY_WIDTH)
    return (
        select(dok__Dokument.c.dok_Id)
        .where(dok__Dokument.c[ORDER_KEY_COLUMN] == token)
        .where(dok__Dokument.c.dok_Typ == DocType.ZK)
        .order_by(dok__Dokument.c.dok_Id)
        .limit(1)
    )


def customer_id_by_key(idempotency_key: str) -> Select[Any]:
    """The id of the customer written with this key (indexed: ``ix_kh_Pole8``)."""
    token = key_token(idempotency_key, CUSTOMER_KEY_WIDTH)
    return (
        select(kh__Kontrahent.c.kh_Id)
        .where(kh__Kontrahent.c[CUSTOMER_KEY_COLUMN] == token)
        .order_by(kh__Kontrahent.c.kh_Id)
        .limit(1)
    )
