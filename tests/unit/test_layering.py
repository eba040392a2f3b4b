"""Import rules between the packages, checked on the source with `ast` (nothing is imported).

- protocol/ is sans-I/O: no asyncio, sockets, threads, clocks, web or database libraries, and
  nothing of relay/ or agent/. ``datetime`` is fine (date types); ``random`` only in backoff.py.
- relay/ never imports agent/, and agent/ never imports relay/: they meet only in protocol/.
- Only the ODBC connector (agent/connectors/odbc*) imports pyodbc.

The folders grow while the project is built, so the files are discovered at collection time.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]

PROTOCOL_FORBIDDEN = frozenset(
    {
        "asyncio",
        "socket",
        "ssl",
        "threading",
        "time",
        "websockets",
        "fastapi",
        "starlette",
        "sqlalchemy",
        "relay",
        "agent",
        # Further I/O libraries of this project's stack, held to the same rule.
        "uvicorn",
        "httpx",
        "pyodbc",
        "asyncpg",
        "aiosqlite",
        "alembic",
        "selectors",
        "select",
        "subprocess",
        "multiprocessing",
        "concurrent",
    }
)
RANDOM_ALLOWED = {"protocol/backoff.py"}


def python_files(package: str) -> list[Path]:
    base = ROOT / package
    if not base.is_dir():
        return []
    return sorted(p for p in base.rglob("*.py") if "__pycache__" not in p.parts)


def rel(path: Path) -> str:
    return path.relative_to(ROOT).as_posix()


def imported_modules(path: Path) -> set[str]:
    """Every module a file imports, absolute, including relative and TYPE_CHECKING imports."""
    tree = ast.parse(path.read_bytes(), filename=str(path))
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    package = parts[:-1]  # a module's package, and for __init__.py the package itself
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                anchor = package[: len(package) - (node.level - 1)]
                base = ".".join([*anchor, *([node.module] if node.module else [])])
            else:
                base = node.module or ""
            found.add(base)
            # `from relay import hub` imports relay.hub as well.
            found.update(f"{base}.{alias.name}" for alias in node.names if alias.name != "*")
        elif isinstance(node, ast.Call) and _is_dynamic_import(node):
            arg = node.args[0] if node.args else None
            if isinstance(arg, ast.Constant) and isinstance(arg.value, str):
                found.add(arg.value)
    return {name for name in found if name}


def _is_dynamic_import(node: ast.Call) -> bool:
    func = node.func
    if isinstance(func, ast.Name):
        return func.id == "__import__"
    return isinstance(func, ast.Attribute) and func.attr == "import_module"


def top(module: str) -> str:
    return module.split(".", 1)[0]


def ids(path: Path) -> str:
    return rel(path)


# --- the helper itself ----------------------------------------------------------------------


def test_imported_modules_resolves_every_form(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(f"{__name__}.ROOT", tmp_path)
    pkg = tmp_path / "relay" / "hub"
    pkg.mkdir(parents=True)
    src = pkg / "links.py"
    src.write_text(
        "import time, os.path as p\n"
        "from typing import TYPE_CHECKING\n"
        "from . import registry\n"
        "from .. import api\n"
        "from ..store.models import Agent\n"
        "if TYPE_CHECKING:\n"
        "    from agent.link import Link\n"
        "def f():\n"
        "    import asyncio\n"
        "    __import__('socket')\n"
        "    importlib.import_module('pyodbc')\n"
    )
    found = imported_modules(src)
    assert {
        "time",
        "os.path",
        "typing",
        "relay.hub",
        "relay.hub.registry",
        "relay",
        "relay.api",
        "relay.store.models",
        "agent.link",
        "asyncio",
        "socket",
        "pyodbc",
    } <= found
    init = pkg / "__init__.py"
    init.write_text("from . import links\nfrom .. import x\n")
    assert {"relay.hub.links", "relay.x"} <= imported_modules(init)


def test_protocol_files_are_found() -> None:
    names = {rel(p) for p in python_files("protocol")}
    assert {"protocol/codec.py", "protocol/session.py", "protocol/backoff.py"} <= names
    assert "protocol/operations/catalogue.py" in names


# --- the rules ------------------------------------------------------------------------------


@pytest.mark.parametrize("path", python_files("protocol"), ids=ids)
def test_protocol_is_sans_io(path: Path) -> None:
    tops = {top(m) for m in imported_modules(path)}
    assert not tops & PROTOCOL_FORBIDDEN, f"{rel(path)} imports {sorted(tops & PROTOCOL_FORBIDDEN)}"
    if rel(path) not in RANDOM_ALLOWED:
        assert "random" not in tops, f"{rel(path)} imports random (only backoff.py may)"


@pytest.mark.parametrize("path", python_files("relay"), ids=ids)
def test_relay_never_imports_agent(path: Path) -> None:
    tops = {top(m) for m in imported_modules(path)}
    assert "agent" not in tops, f"{rel(path)} imports agent"


@pytest.mark.parametrize("path", python_files("agent"), ids=ids)
def test_agent_never_imports_relay(path: Path) -> None:
    tops = {top(m) for m in imported_modules(path)}
    assert "relay" not in tops, f"{rel(path)} imports relay"


def _may_import_pyodbc(path: Path) -> bool:
    parts = path.relative_to(ROOT).parts
    return parts[:2] == ("agent", "connectors") and len(parts) > 2 and parts[2].startswith("odbc")


@pytest.mark.parametrize(
    "path",
    [p for pkg in ("protocol", "relay", "agent") for p in python_files(pkg)],
    ids=ids,
)
def test_only_the_odbc_connector_imports_pyodbc(path: Path) -> None:
    if _may_import_pyodbc(path):
        return
    tops = {top(m) for m in imported_modules(path)}
    assert "pyodbc" not in tops, f"{rel(path)} imports pyodbc; only agent/connectors/odbc* may"


def test_pyodbc_rule_matches_the_odbc_folder_only() -> None:
    assert _may_import_pyodbc(ROOT / "agent/connectors/odbc/pool.py")
    assert _may_import_pyodbc(ROOT / "agent/connectors/odbc_base.py")
    assert not _may_import_pyodbc(ROOT / "agent/connectors/subiekt/queries.py")
    assert not _may_import_pyodbc(ROOT / "agent/odbc.py")
    assert not _may_import_pyodbc(ROOT / "relay/connectors/odbc.py")
