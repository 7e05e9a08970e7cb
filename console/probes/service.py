"""The probe service: runs each job's targets on the job's interval and stores the results.

Scheduling is one asyncio task per (job, target) on the console's loop; the probes
themselves are blocking network code and run on the service's own thread pool
(``probes.workers`` threads), never on the IOLoop. A run is bounded by its module's
``timeout`` (socket timeouts inside the probe, and ``asyncio.wait_for`` around it); a
target whose previous run has not finished is not started again (the run is skipped and
counted), so a hanging target cannot pile up threads.

Results are written through the ingest path (:meth:`IngestService.ingest`), one batch per
run, under the host row ``probes.host`` (default ``fleetdeck-probes``; its ``interval``
is the shortest job interval, so the host shows up while probes run). Every series
carries ``instance`` = the target and ``job`` = the job's name as explicit labels, as
Prometheus stores a blackbox_exporter scrape, so rules such as
``probe_success{job="web"} == 0`` or ``probe_ssl_earliest_cert_expiry - time() < 86400 * 14``
work unchanged.
"""
from __future__ import annotations

import asyncio
import logging
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Callable

from console.ingest.batch import Batch, MetricIn, canonical_labels
from console.ingest.service import IngestService
from console.probes.config import Job, Module, ProbesConfig
from console.probes.prober import ProbeResult, run_probe

log = logging.getLogger("fleetdeck.probes")
GRACE_SECONDS = 1.0  # beyond the module timeout before a run is abandoned


@dataclass
class TargetState:
    """The last outcome of one (job, target), for the console's own view and tests."""

    job: str
    target: str
    runs: int = 0
    skipped: int = 0  # runs not started because the previous one was still running
    last_success: bool | None = None
    last_error: str = ""
    last_run_at: float | None = None  # Unix seconds


class ProbeService:
    """Runs the configured probes; ``start()`` on the running loop, ``close()`` to stop."""

    def __init__(self, config: ProbesConfig, ingest: IngestService, clock: Callable[[], float] = time.time,
                 leads: Callable[[], bool] = lambda: True) -> None:
        self._leads = leads  # one console of several probes, or every probe would be stored twice
        self._config = config
        self._ingest = ingest
        self._clock = clock
        self._pool: ThreadPoolExecutor | None = None
        self._tasks: list[asyncio.Task] = []
        self._runs: set[asyncio.Task] = set()  # probes in flight, cancelled by close()
        self.states: dict[tuple[str, str], TargetState] = {
            (job.name, target): TargetState(job.name, target) for job in config.jobs for target in job.targets}
        self._interval = min((job.interval for job in config.jobs), default=None)

    @property
    def config(self) -> ProbesConfig:
        return self._config

    def start(self) -> None:
        if not self._config.jobs or self._tasks:
            return
        self._pool = ThreadPoolExecutor(self._config.workers, thread_name_prefix="probe")
        loop = asyncio.get_running_loop()
        for job in self._config.jobs:
            for index, target in enumerate(job.targets):
                # Spread a job's targets over its interval so they do not all start at once.
                offset = job.interval * index / len(job.targets)
                self._tasks.append(loop.create_task(self._every(job, target, offset), name=f"probe {job.name}"))

    def close(self) -> None:
        for task in [*self._tasks, *self._runs]:
            task.cancel()
        self._tasks, self._runs = [], set()
        if self._pool is not None:
            self._pool.shutdown(wait=False, cancel_futures=True)
            self._pool = None

    async def _every(self, job: Job, target: str, offset: float) -> None:
        await asyncio.sleep(offset)
        module = self._config.modules[job.module]
        state = self.states[(job.name, target)]
        running: asyncio.Future | None = None
        loop = asyncio.get_running_loop()
        while True:
            started = loop.time()
            if not self._leads():
                pass  # another console leads and probes
            elif running is not None and not running.done():
                state.skipped += 1
            else:
                running = loop.create_task(self.run_once(job, target, module))
                self._runs.add(running)
                running.add_done_callback(self._runs.discard)
            await asyncio.sleep(max(0.0, job.interval - (loop.time() - started)))

    async def run_once(self, job: Job, target: str, module: Module) -> ProbeResult:
        """Probe ``target`` once on the pool and store the samples; returns the result."""
        loop = asyncio.get_running_loop()
        state = self.states[(job.name, target)]
        try:
            result = await asyncio.wait_for(loop.run_in_executor(self._pool, run_probe, target, module),
                                            module.timeout + GRACE_SECONDS)
        except asyncio.TimeoutError:
            result = ProbeResult(error=f"no answer within {module.timeout:g} s")
            result.add("probe_duration_seconds", module.timeout)
            result.add("probe_success", 0)
        state.runs += 1
        state.last_success, state.last_error, state.last_run_at = result.success, result.error, self._clock()
        if result.error:
            log.info("probe %s %s failed: %s", job.name, target, result.error)
        try:
            await self._ingest.ingest(self.batch(job, target, result))
        except Exception:  # a database outage must not end the schedule; the next run retries
            log.exception("storing probe results of %s %s", job.name, target)
        return result

    def batch(self, job: Job, target: str, result: ProbeResult) -> Batch:
        """One ingest batch of ``result``: every sample stamped now, labelled with
        ``instance`` and ``job``."""
        now_ms = int(self._clock() * 1000)
        metrics = [MetricIn(name=name, type="gauge",
                            labels_json=canonical_labels({**labels, "instance": target, "job": job.name}),
                            points=[(now_ms, value)])
                   for name, labels, value in result.samples]
        return Batch(host=self._config.host, batch_id=uuid.uuid4().hex, sent_at=None, agent_version=None,
                     interval=self._interval, labels_json="{}", metrics=metrics)


__all__ = ["ProbeService", "TargetState"]
