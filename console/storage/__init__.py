"""Storage: the SQL schema, migrations and the database handle."""
from console.storage.database import Database, make_engine, upgrade_schema

__all__ = ["Database", "make_engine", "upgrade_schema"]
