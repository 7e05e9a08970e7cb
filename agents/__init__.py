"""The Fleetdeck host agent: run collectors on a schedule and push batches to the console.

Import closure: this package uses only the standard library, PyYAML and
psutil (the latter only where a collector needs it); tests/unit/test_import_closure.py
checks that the console's dependencies never load here.
"""

__version__ = "0.1.0"
