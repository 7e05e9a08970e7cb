"""An installed (non-editable) Fleetdeck has every module: each source folder is a package."""
from __future__ import annotations

from pathlib import Path

from setuptools import find_packages

REPO = Path(__file__).resolve().parents[2]


def test_every_source_folder_is_found_by_setup():
    packaged = set(find_packages(where=str(REPO), include=["console*", "agents*", "collectors*"]))
    for top in ("console", "agents", "collectors"):
        for folder in [REPO / top, *(p for p in (REPO / top).rglob("*") if p.is_dir())]:
            if "__pycache__" in folder.parts or "migrations" in folder.relative_to(REPO).parts:
                continue  # migrations ship as package data of console.storage
            if any(folder.glob("*.py")):
                name = ".".join(folder.relative_to(REPO).parts)
                assert name in packaged, f"{name} has modules but no __init__.py: a wheel would lack it"
