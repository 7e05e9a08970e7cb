"""Handlers stay thin (docs/architecture.md, "Services"): they await service methods and
never pick a database thread or reach storage themselves. Read from the source with
``ast``, so a new handler module is checked the day it is added."""

from __future__ import annotations

import ast
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]
# Database methods that choose a thread (or block the IOLoop): services call them, handlers don't.
THREAD_CHOICES = {"read", "write", "run", "on_reader", "on_writer"}


def handler_modules() -> list[Path]:
    console = REPO_ROOT / "console"
    found = {console / "handlers.py", console / "live_socket.py"}
    found.update(console.glob("**/handlers*.py"))
    return sorted(p for p in found if p.exists())


def violations(path: Path) -> list[str]:
    """``file:line what`` for each use of a database thread or of console.storage."""
    tree = ast.parse(path.read_text(), str(path))
    where = path.relative_to(REPO_ROOT) if path.is_relative_to(REPO_ROOT) else path.name
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Attribute) and node.value.attr == "db":
            if node.attr in THREAD_CHOICES:
                found.append(f"{where}:{node.lineno} .db.{node.attr}")
        elif isinstance(node, ast.Attribute) and node.attr == "db" and isinstance(node.value, ast.Attribute) \
                and node.value.attr == "services":
            found.append(f"{where}:{node.lineno} services.db")
        elif isinstance(node, ast.Import):
            found += [f"{where}:{node.lineno} import {a.name}" for a in node.names
                      if a.name == "console.storage" or a.name.startswith("console.storage.")]
        elif isinstance(node, ast.ImportFrom) and node.module and (
                node.module == "console.storage" or node.module.startswith("console.storage.")):
            found.append(f"{where}:{node.lineno} from {node.module} import")
    return found


def test_the_scan_sees_every_kind_of_violation(tmp_path):
    # The checker itself: each pattern it must refuse, in one made-up handler module.
    sample = tmp_path / "handlers.py"
    source = ("import console.storage.models\n"
              "from console.storage.database import Database\n"
              "async def get(self):\n"
              "    await self.services.db.read(self.services.users.list)\n"
              "    await handler.services.db.on_writer(print)\n"
              "    self.services.db.run(print)\n")
    sample.write_text(source)
    kinds = sorted(entry.split(" ", 1)[1] for entry in violations(sample))
    assert kinds == [".db.on_writer", ".db.read", ".db.run", "from console.storage.database import",
                     "import console.storage.models", "services.db", "services.db", "services.db"]


def test_handler_modules_found():
    names = {str(p.relative_to(REPO_ROOT)) for p in handler_modules()}
    assert {"console/handlers.py", "console/live_socket.py", "console/auth/handlers.py",
            "console/deploy/handlers.py", "console/logs/handlers.py", "console/query/handlers.py"} <= names


def test_handlers_never_choose_a_database_thread_or_import_storage():
    found = [v for path in handler_modules() for v in violations(path)]
    assert found == [], "handlers must await service methods (docs/architecture.md, Services):\n" + "\n".join(found)
