"""The dashboard's files and how the relay serves them; no browser needed.

The Content-Security-Policy forbids inline code, so an inline script or style would not break a
test here but the page in production: these checks catch it before a browser does. The two
dictionaries must have the same keys, and every key a script asks for must exist.
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from html.parser import HTMLParser
from pathlib import Path

import httpx
import pytest

from relay.app import create_app
from relay.dashboard.files import STATIC_DIR
from relay.settings import RelaySettings

SCRIPTS = sorted(STATIC_DIR.rglob("*.js"))
DICTIONARY_KEY = re.compile(r'^\s+"([\w.]+)":', re.MULTILINE)
LITERAL_KEY = re.compile(r'\bt\("([\w.]+)"')


@pytest.fixture
async def http(tmp_path: Path) -> AsyncIterator[httpx.AsyncClient]:
    # Static files need no store, so the app's lifespan never runs.
    app = create_app(RelaySettings(database_url=f"sqlite:///{tmp_path / 'unused.sqlite'}"))
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://relay") as client:
        yield client


@pytest.mark.parametrize("path", ["/dashboard/", "/dashboard/js/app.js", "/dashboard/app.css"])
async def test_every_file_carries_the_security_headers(http: httpx.AsyncClient, path: str) -> None:
    answer = await http.get(path)
    assert answer.status_code == 200
    policy = answer.headers["content-security-policy"]
    assert "default-src 'self'" in policy
    assert "frame-ancestors 'none'" in policy
    assert "'unsafe-inline'" not in policy
    assert answer.headers["x-frame-options"] == "DENY"
    assert answer.headers["x-content-type-options"] == "nosniff"
    assert answer.headers["cache-control"] == "no-cache"

    again = await http.get(path, headers={"if-none-match": answer.headers["etag"]})
    assert again.status_code == 304
    assert again.headers["content-security-policy"] == policy


async def test_the_bare_path_redirects_and_unknown_files_are_problems(
    http: httpx.AsyncClient,
) -> None:
    answer = await http.get("/dashboard")
    assert answer.status_code in (307, 308)
    assert answer.headers["location"].endswith("/dashboard/")
    missing = await http.get("/dashboard/js/nothing.js")
    assert missing.status_code == 404
    assert missing.headers["content-type"] == "application/problem+json"


class _InlineCode(HTMLParser):
    """Collects what a strict CSP would block in the page."""

    def __init__(self) -> None:
        super().__init__()
        self.blocked: list[str] = []
        self._in_script = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        names = {name for name, _ in attrs}
        if tag == "style":
            self.blocked.append("<style>")
        if tag == "script" and "src" not in names:
            self.blocked.append("inline <script>")
        if tag == "link" and ("rel", "stylesheet") in attrs:
            href = dict(attrs).get("href") or ""
            if "//" in href:
                self.blocked.append(f"remote stylesheet {href}")
        self.blocked += [f"{name}= on <{tag}>" for name in names if name.startswith("on")]
        if "style" in names:
            self.blocked.append(f"style= on <{tag}>")
        src = dict(attrs).get("src") or ""
        if "//" in src:
            self.blocked.append(f"remote {src}")


def test_the_page_has_no_inline_code_and_nothing_remote() -> None:
    parser = _InlineCode()
    parser.feed((STATIC_DIR / "index.html").read_text(encoding="utf-8"))
    assert parser.blocked == []


@pytest.mark.parametrize("script", SCRIPTS, ids=lambda p: str(p.relative_to(STATIC_DIR)))
def test_scripts_build_no_markup_from_strings(script: Path) -> None:
    """Values from the API must land as text: no innerHTML, no eval, no style attributes."""
    text = script.read_text(encoding="utf-8")
    for forbidden in ("innerHTML", "outerHTML", "insertAdjacentHTML", "eval(", "new Function"):
        assert forbidden not in text, f"{script.name} uses {forbidden}"
    assert 'setAttribute("style"' not in text
    assert "http://" not in text.replace("http://www.w3.org/2000/svg", "")
    assert "https://" not in text


def _dictionary(code: str) -> set[str]:
    return set(DICTIONARY_KEY.findall((STATIC_DIR / "js" / "lang" / f"{code}.js").read_text()))


def test_both_languages_have_every_string() -> None:
    english, polish = _dictionary("en"), _dictionary("pl")
    assert english, "no keys parsed from en.js"
    assert english - polish == set(), "missing in Polish"
    assert polish - english == set(), "missing in English"
    used = {key for script in SCRIPTS for key in LITERAL_KEY.findall(script.read_text())}
    html = (STATIC_DIR / "index.html").read_text(encoding="utf-8")
    used |= set(re.findall(r'data-i18n(?:-label)?="([\w.]+)"', html))
    assert used - english == set(), "asked for but not defined"
