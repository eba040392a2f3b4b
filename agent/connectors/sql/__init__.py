"""What every SQL connector shares: one reading of database errors, server-side statement
limits from a call's deadline, and the rule for reconnecting after the database went away.

Connectors for Subiekt, Optima, XL and the rest sit on SQLAlchemy Core over pyodbc; they differ
in their tables, never in how a lost connection or a deadlock is reported, so that lives here.
"""

from agent.connectors.sql.errors import Fault, classify, connector_error, translate
from agent.connectors.sql.timeouts import apply_statement_limit

__all__ = ["Fault", "apply_statement_limit", "classify", "connector_error", "translate"]
