"""Cross-cutting building blocks: settings, logging, database engine, security helpers."""
