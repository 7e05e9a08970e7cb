"""``python -m agents``: same as the ``fleetdeck-agent`` command."""

import sys

from agents.cli import main

sys.exit(main())
