"""Data access: plain functions taking a Connection, so callers own the transaction."""
