"""Alembic environment: migrations run on a connection the console hands over."""
from alembic import context

from console.storage.models import Base, include_in_comparison

connection = context.config.attributes["connection"]
context.configure(connection=connection, target_metadata=Base.metadata,
                  render_as_batch=connection.dialect.name == "sqlite",
                  include_name=include_in_comparison)
with context.begin_transaction():
    context.run_migrations()
