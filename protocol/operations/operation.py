"""One entry of the catalogue: a name, typed arguments and result, and whether it writes.

Kept apart from `catalogue` so that each operation group's module can list its own entries
(``OPERATIONS``) next to its models, and the catalogue only puts the groups together.
"""

from __future__ import annotations

from dataclasses import dataclass

from pydantic import BaseModel


@dataclass(frozen=True, slots=True)
class Operation:
    name: str
    args: type[BaseModel]
    result: type[BaseModel]
    writes: bool
    summary: str

    @property
    def group(self) -> str:
        return self.name.split(".", 1)[0]
