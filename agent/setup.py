"""Packaging for the Fleetdeck host agent alone: ``fleetdeck-agent`` (agents/ and
collectors/ of this repository), which needs only psutil and PyYAML.

Build or install it from the repository root::

    pip wheel --no-deps -w dist/ ./agent      # dist/fleetdeck_agent-0.1.0-py3-none-any.whl
    pip install ./agent                       # or -e ./agent while developing

The console's distribution (../setup.py) depends on it, so a console install has the
agent too; a host that runs only the agent installs this one alone.
"""
from pathlib import Path

from setuptools import setup

ROOT = Path(__file__).resolve().parent.parent


def _packages(top: str) -> list[str]:
    """``top`` and its sub-packages (folders with an ``__init__.py``) under the repository root."""
    return sorted(".".join(p.parent.relative_to(ROOT).parts) for p in (ROOT / top).rglob("__init__.py")
                  if "__pycache__" not in p.parts)


setup(
    name="fleetdeck-agent",
    version="0.1.0",
    description="Fleetdeck host agent: collects host metrics and log lines and pushes them to a Fleetdeck console.",
    license="MIT",
    python_requires=">=3.10",
    # The sources live beside this folder, in the repository's agents/ and collectors/.
    package_dir={"agents": "../agents", "collectors": "../collectors"},
    packages=_packages("agents") + _packages("collectors"),
    install_requires=[
        "psutil>=5.9,<8",
        "PyYAML>=6.0,<7",
    ],
    entry_points={"console_scripts": ["fleetdeck-agent=agents.cli:main"]},
)
