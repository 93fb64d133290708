"""Alembic environment: runs on the connection that tunelab.store.db.migrate passes in."""

from alembic import context

from tunelab.store.schema import Base

connection = context.config.attributes["connection"]
context.configure(connection=connection, target_metadata=Base.metadata,
                  render_as_batch=connection.dialect.name == "sqlite")
with context.begin_transaction():
    context.run_migrations()
