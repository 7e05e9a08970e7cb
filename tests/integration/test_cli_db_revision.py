"""``fleetdeck db heads`` and ``fleetdeck db revision`` as real processes, on a private copy
of the console package (the command writes into the migrations folder of the console it
runs from, so the checkout's own folder is never touched)."""
from __future__ import annotations

import ast
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from alembic.script import ScriptDirectory

from tests.integration.procs import REPO, child_env

SCRATCH_MODEL = '''

class ScratchNote(Base):
    """A table the models have and no migration creates yet."""

    __tablename__ = "scratch_notes"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    note: Mapped[str] = mapped_column(String(40), index=True)
'''

# Brings a fresh SQLite database to the head of the copy's migrations and prints what
# Alembic's comparison with the copy's models still finds (nothing when they agree).
MIGRATE_AND_COMPARE = """
import sys
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import inspect
from console.storage import Database
from console.storage.models import Base, include_in_comparison
db = Database("sqlite:///" + sys.argv[1])
db.migrate()
with db.engine.connect() as conn:
    print(sorted(inspect(conn).get_table_names()))
    print(compare_metadata(MigrationContext.configure(conn, opts={"include_name": include_in_comparison}),
                           Base.metadata))
db.close()
"""


@pytest.fixture
def copy(tmp_path) -> Path:
    """A copy of the console package whose migrations folder the test may change."""
    root = tmp_path / "src"
    shutil.copytree(REPO / "console", root / "console", ignore=shutil.ignore_patterns("__pycache__"))
    return root


def run(root: Path, *args: str) -> subprocess.CompletedProcess:
    env = child_env()
    env["PYTHONPATH"] = os.pathsep.join([str(root), env["PYTHONPATH"]])  # the copy's console first
    return subprocess.run([sys.executable, *args], cwd=root, env=env, capture_output=True, text=True, timeout=120)


def fleetdeck(root: Path, *args: str) -> subprocess.CompletedProcess:
    return run(root, "-m", "console.cli", *args)


def versions(root: Path) -> Path:
    return root / "console" / "storage" / "migrations" / "versions"


def revision_ids(path: Path) -> tuple[str, object]:
    """``revision`` and ``down_revision`` as written in a migration file."""
    values = {}
    for node in ast.parse(path.read_text()).body:
        if isinstance(node, ast.Assign) and isinstance(node.targets[0], ast.Name):
            if node.targets[0].id in ("revision", "down_revision"):
                values[node.targets[0].id] = ast.literal_eval(node.value)
    return values["revision"], values["down_revision"]


def test_revision_follows_the_single_head_and_becomes_it(copy):
    (head,) = ScriptDirectory(str(versions(copy).parent)).get_heads()
    before = fleetdeck(copy, "db", "heads")
    assert before.returncode == 0, before.stderr
    assert before.stdout.split() == [head]

    done = fleetdeck(copy, "db", "revision", "-m", "add a note", "--rev-id", "scratch_0001_note")
    assert done.returncode == 0, done.stderr
    (written,) = versions(copy).glob("scratch_0001_note_*.py")
    assert written.name == "scratch_0001_note_add_a_note.py"
    assert revision_ids(written) == ("scratch_0001_note", head)
    assert '"""add a note' in written.read_text()
    assert fleetdeck(copy, "db", "heads").stdout.split() == ["scratch_0001_note"]

    # the next one follows the new head, forming one line
    done = fleetdeck(copy, "db", "revision", "-m", "and another", "--rev-id", "scratch_0002_more")
    assert done.returncode == 0, done.stderr
    (written,) = versions(copy).glob("scratch_0002_more_*.py")
    assert revision_ids(written) == ("scratch_0002_more", "scratch_0001_note")


def test_autogenerate_writes_what_the_models_add_and_it_applies(copy, tmp_path):
    with (copy / "console" / "storage" / "models.py").open("a") as models:
        models.write(SCRATCH_MODEL)
    done = fleetdeck(copy, "db", "revision", "-m", "scratch notes", "--autogenerate", "--rev-id", "scratch_0001_notes")
    assert done.returncode == 0, done.stderr
    (written,) = versions(copy).glob("scratch_0001_notes_*.py")
    text = written.read_text()
    assert "op.create_table('scratch_notes'" in text and "ix_scratch_notes_note" in text
    assert "drop_table('scratch_notes')" in text  # and its downgrade

    result = run(copy, "-c", MIGRATE_AND_COMPARE, str(tmp_path / "fresh.db"))
    assert result.returncode == 0, result.stderr
    tables, diff = result.stdout.splitlines()
    assert "'scratch_notes'" in tables
    assert diff == "[]"  # the written migration builds exactly what the models describe


def test_a_forked_history_is_refused_naming_both_heads(copy):
    (head,) = ScriptDirectory(str(versions(copy).parent)).get_heads()
    # two migrations written at the same time off the same head
    for rev_id in ("scratch_0001_a", "scratch_0001_b"):
        (versions(copy) / f"{rev_id}.py").write_text(
            f'"""{rev_id}"""\nrevision = "{rev_id}"\ndown_revision = "{head}"\nbranch_labels = None\n'
            "depends_on = None\n\n\ndef upgrade() -> None:\n    pass\n\n\ndef downgrade() -> None:\n    pass\n")
    heads = fleetdeck(copy, "db", "heads")
    assert heads.stdout.split() == ["scratch_0001_a", "scratch_0001_b"]
    refused = fleetdeck(copy, "db", "revision", "-m", "third")
    assert refused.returncode == 1
    assert "2 heads (scratch_0001_a, scratch_0001_b)" in refused.stderr
    assert "set the down_revision of the newer migration to the other head" in refused.stderr
    assert sorted(p.name for p in versions(copy).glob("scratch_*.py")) == ["scratch_0001_a.py", "scratch_0001_b.py"]


@pytest.mark.parametrize("rev_id, problem", [
    ("has-dash", "use letters, digits and underscores"),
    ("0015_merge", "a revision with this id exists already"),
])
def test_bad_revision_ids_are_refused_and_nothing_is_written(copy, rev_id, problem):
    before = sorted(p.name for p in versions(copy).iterdir())
    refused = fleetdeck(copy, "db", "revision", "-m", "x", "--rev-id", rev_id)
    assert refused.returncode == 1, refused.stdout
    assert problem in refused.stderr
    assert sorted(p.name for p in versions(copy).iterdir()) == before
