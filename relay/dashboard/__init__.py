"""The operations dashboard: a static single-page app served at ``/dashboard/``.

Everything it shows or does goes through the admin JSON API (docs/admin-api.md), so this
package holds no logic of its own beyond serving its files with the right headers.
"""

from relay.dashboard.files import DASHBOARD_PATH, dashboard_route

__all__ = ["DASHBOARD_PATH", "dashboard_route"]
