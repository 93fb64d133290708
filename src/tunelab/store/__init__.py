"""The project store: runs, their metrics and data fingerprints, and model versions with
their stage. SQLite (one WAL-mode file under .tunelab/) by default; PostgreSQL or any
SQLAlchemy URL through TUNELAB_DB_URL. The schema is managed by Alembic migrations."""
