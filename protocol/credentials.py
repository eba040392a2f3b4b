"""The shape of ERP Relay credentials, known to both sides: ``<prefix>_<public id>_<secret>``.

The relay makes and checks them (`relay.secrets`); the agent names the token it connects with
(its status shows which token each connection uses, so an admin rotating tokens can tell when
the old one is no longer in use), and log redaction recognises one to keep its public id and
drop its secret. One definition here keeps the three from drifting apart.
"""

from __future__ import annotations

import re

PUBLIC_ID_LENGTH = 12
"""``[a-z0-9]`` characters naming a credential in lists, logs and revoke commands; not secret."""
SECRET_LENGTH = 43
"""Base62 characters of the secret part: 256 bits."""

PUBLIC_PART = rf"er[a-z]{{1,2}}_[a-z0-9]{{{PUBLIC_ID_LENGTH}}}"
"""A regex for the prefix and public id (``erpa_``/``erpk_`` and any future ``er??_`` kind)."""

_PUBLIC_ID = re.compile(rf"^er[a-z]{{1,2}}_([a-z0-9]{{{PUBLIC_ID_LENGTH}}})_")


def public_id(credential: str) -> str:
    """The public id of a credential, or "" for a string of another shape."""
    match = _PUBLIC_ID.match(credential)
    return match.group(1) if match else ""
