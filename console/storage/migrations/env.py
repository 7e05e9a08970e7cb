"""Alembic environment: migrations run on a connection the console hands over
(console/storage/database.py ``upgrade_schema``; ``fleetdeck db revision --autogenerate``)."""
from alembic import context

from console.storage.models import Base, include_in_comparison

connection = context.config.attributes.get("connection")
if connection is None:
    # Plain `alembic upgrade` has no database to work on: the console's configuration says
    # which one, and the console applies the migrations itself.
    raise SystemExit("migrations run through the console: use `fleetdeck db upgrade`, "
                     "or `fleetdeck db revision` to write one (CONTRIBUTING.md)")
context.configure(connection=connection, target_metadata=Base.metadata,
                  render_as_batch=connection.dialect.name == "sqlite",
                  include_name=include_in_comparison)
with context.begin_transaction():
    context.run_migrations()
