"""The database that keeps jobs and runs: SQLAlchemy over SQLite (the default, a file) or PostgreSQL (several
replicas), its schema migrated by Alembic (``api.store.base.migrate``). Every call into it is synchronous and runs
in a thread (``anyio.to_thread.run_sync``), never on the event loop."""
