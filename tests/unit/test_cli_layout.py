"""The ``fleetdeck`` command stays easy to read and change: one module per command group
under console/cli/, each registering its subparsers with ``add_commands(sub)``, and no
function there longer than 60 lines (read with ast, no import)."""
from __future__ import annotations

import ast
from pathlib import Path

CLI = Path(__file__).resolve().parents[2] / "console" / "cli"
MAX_LINES = 60
NOT_GROUPS = {"__init__.py", "__main__.py", "common.py"}


def modules() -> dict[str, ast.Module]:
    assert CLI.is_dir(), "console/cli is a package of command groups"
    found = {p.name: ast.parse(p.read_text(), filename=str(p)) for p in sorted(CLI.glob("*.py"))}
    assert NOT_GROUPS < set(found) and len(found) > len(NOT_GROUPS), sorted(found)
    return found


def test_no_function_in_the_cli_exceeds_60_lines():
    long = [f"{name}:{node.lineno} {node.name} ({node.end_lineno - node.lineno + 1} lines)"
            for name, tree in modules().items() for node in ast.walk(tree)
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef))
            and node.end_lineno - node.lineno + 1 > MAX_LINES]
    assert long == []


def test_each_command_group_registers_its_commands():
    groups = {name: tree for name, tree in modules().items() if name not in NOT_GROUPS}
    missing = [name for name, tree in groups.items()
               if not any(isinstance(node, ast.FunctionDef) and node.name == "add_commands" for node in tree.body)]
    assert missing == []
    registered = {alias.name for node in ast.walk(modules()["__init__.py"]) if isinstance(node, ast.ImportFrom)
                  and node.module == "console.cli" for alias in node.names}
    assert registered == {name.removesuffix(".py") for name in groups}


def test_the_cli_lists_the_secret_kinds_the_store_takes():
    from console.cli.audit import SECRET_KINDS
    from console.secrets import SECRET_KINDS as STORED

    assert SECRET_KINDS == STORED
