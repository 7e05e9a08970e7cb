"""console/server.py ``tune_malloc``: glibc's thresholds fixed, so large blocks freed by
one query are reused by the next instead of being given back and faulted in again.

Each case runs in a fresh interpreter (the thresholds are process-wide and glibc adjusts
them as a process frees memory), allocating what a large answer allocates: 40 blocks of
1 MiB, all freed, five times over; the minor page faults of the last three rounds tell
whether the memory was kept."""
from __future__ import annotations

import json
import os
import platform
import subprocess
import sys

import pytest

pytestmark = pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="mallopt thresholds are glibc's")

ROUNDS = """
import json, resource, sys
from console.server import tune_malloc
done = tune_malloc() if sys.argv[1] == "tuned" else []
faults = []
for _ in range(5):
    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    blocks = [b"\\x01" * (1 << 20) for _ in range(40)]  # written: every page touched
    del blocks
    faults.append(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
print(json.dumps({"done": done, "faults": faults}))
"""

PAGES = 40 * (1 << 20) // os.sysconf("SC_PAGE_SIZE")  # one round's blocks, in pages


def run(mode: str, **env: str) -> dict:
    out = subprocess.run([sys.executable, "-c", ROUNDS, mode], capture_output=True, text=True, check=True,
                         env={**{k: v for k, v in os.environ.items() if not k.startswith("MALLOC_")}, **env})
    return json.loads(out.stdout)


def test_tuned_process_reuses_freed_blocks() -> None:
    tuned = run("tuned")
    assert tuned["done"] == ["MALLOC_MMAP_THRESHOLD_", "MALLOC_TRIM_THRESHOLD_"]
    # Kept from round to round: a small fraction of one round's pages.
    assert sum(tuned["faults"][2:]) < PAGES // 10, tuned


def test_bare_process_faults_the_blocks_in_again() -> None:
    """The control: without the thresholds the same rounds fault most of their pages in
    again each time (the heap trimmed, or the blocks mapped and unmapped), so the test
    above measures what the tuning changes."""
    bare = run("bare")
    assert bare["done"] == []
    assert min(bare["faults"][2:]) > PAGES // 2, bare


def test_thresholds_set_by_the_operator_stand() -> None:
    """glibc's own environment variables win: tune_malloc leaves that threshold alone."""
    tuned = run("tuned", MALLOC_TRIM_THRESHOLD_=str(128 << 10))
    assert tuned["done"] == ["MALLOC_MMAP_THRESHOLD_"]
    # The operator's low trim threshold gives the blocks back: they fault in again.
    assert min(tuned["faults"][2:]) > PAGES // 2, tuned
