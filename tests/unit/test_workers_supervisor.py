"""The supervisor of ``serve --workers`` with real forked workers: a worker failing on its
configuration (status 2) or failing over and over stops the pool with a non-zero status,
without waiting for the healthy one (stopped with SIGTERM). Restarting a killed worker and
stopping on SIGTERM are tested on the real command in
tests/integration/test_ingest_exactly_once.py."""
from __future__ import annotations

import time
from pathlib import Path

from console.cluster.workers import Supervisor, bind_slots


def pool(tmp_path: Path, run_worker, **kw) -> Supervisor:  # noqa: ANN001
    slots, _ = bind_slots("127.0.0.1", 0, 2)
    return Supervisor(slots, run_worker, restart_delay=0.05, stop_timeout=5, **kw)


def test_a_worker_failing_on_its_configuration_stops_the_pool_with_status_2(tmp_path):
    assert pool(tmp_path, lambda slot, sockets: 2 if slot == 1 else time.sleep(30) or 0).run() == 2


def test_a_worker_failing_over_and_over_stops_the_pool_with_status_1(tmp_path):
    starts = tmp_path / "starts"

    def crash(slot: int, sockets) -> int:  # noqa: ANN001
        with open(starts, "a") as fh:
            fh.write(f"{slot}\n")
        if slot == 0:
            time.sleep(30)
        return 1

    began = time.monotonic()
    assert pool(tmp_path, crash, max_restarts=3, restart_window=60).run() == 1
    assert starts.read_text().split().count("1") == 4  # the first start and 3 restarts
    assert time.monotonic() - began < 20  # slot 0, still sleeping, was stopped, not waited for
