"""Store adapters of MeteringService (one SQL adapter serves SQLite and PostgreSQL)."""
