"""``python -m console.cli``: the ``fleetdeck`` command."""
import sys

from console.cli import main

sys.exit(main())
