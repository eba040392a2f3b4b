"""The operations console's back end: operators, their sessions, who may do what, and the
audit log of what they did (docs/admin-api.md)."""
