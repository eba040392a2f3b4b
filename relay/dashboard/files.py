"""Serving the dashboard's files, each with a strict security policy and revalidation.

The assets are hand-written modules shipped inside the package (no build step, no CDN), so the
policy can be as strict as a browser allows: only this origin's scripts, styles, images and
connections, no inline code, never inside a frame. File names carry no content hash, so a
browser must revalidate (ETag / Last-Modified) before reusing a copy; otherwise a relay upgrade
would run yesterday's script against today's API.
"""

from __future__ import annotations

import os
from pathlib import Path

from starlette.responses import Response
from starlette.routing import Mount
from starlette.staticfiles import PathLike, StaticFiles
from starlette.types import Scope

DASHBOARD_PATH = "/dashboard"
STATIC_DIR = Path(__file__).parent / "static"

CONTENT_SECURITY_POLICY = "; ".join(
    [
        "default-src 'self'",
        "script-src 'self'",
        "style-src 'self'",
        "img-src 'self' data:",
        "connect-src 'self'",
        "object-src 'none'",
        "base-uri 'none'",
        "form-action 'self'",
        "frame-ancestors 'none'",
    ]
)

SECURITY_HEADERS = {
    "Content-Security-Policy": CONTENT_SECURITY_POLICY,
    "X-Frame-Options": "DENY",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cross-Origin-Opener-Policy": "same-origin",
    "Cross-Origin-Resource-Policy": "same-origin",
    "Permissions-Policy": "camera=(), microphone=(), geolocation=(), payment=()",
    "Cache-Control": "no-cache",
}


class DashboardFiles(StaticFiles):
    """`StaticFiles` whose every answer, including 304, carries `SECURITY_HEADERS`."""

    def file_response(
        self,
        full_path: PathLike,
        stat_result: os.stat_result,
        scope: Scope,
        status_code: int = 200,
    ) -> Response:
        response = super().file_response(full_path, stat_result, scope, status_code)
        response.headers.update(SECURITY_HEADERS)
        return response


def dashboard_route() -> Mount:
    """The route to append to the app; ``/dashboard`` alone is redirected to ``/dashboard/``
    by the router, and ``index.html`` answers for the directory."""
    return Mount(
        DASHBOARD_PATH, app=DashboardFiles(directory=STATIC_DIR, html=True), name="dashboard"
    )
