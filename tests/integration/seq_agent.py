"""A real agent process whose every batch carries a sequence number (test helper).

``python -m tests.integration.seq_agent CONFIG`` runs :class:`agents.agent.Agent` with
the real spool, sender and HTTP client, configured from the agent settings in CONFIG.
Each batch holds one sample ``fleetdeck_test_seq`` (value: the sequence number) and one
log line ``seq=N`` (source ``seq``), so loss and duplication are SQL counts.

In ``<state_dir>``: ``seq_next`` (the next number; reserved before the batch is built,
so a kill leaves a gap rather than a repeat), ``durable.log`` (``N SAMPLES`` per line,
written from the agent's on_durable callback), and ``pause`` (while it exists, no batch
is collected, so a backlog can drain; samples held while the spool was full still
go to the spool), ``sender_fault`` (while it exists, every push
raises RuntimeError: a sender thread dying of an unexpected error), ``crash_after_spool``
(the next batch with lines from a log file is spooled, then the process kills itself
with SIGKILL before the positions file is saved; the flag is removed first). On start it prints
``spool torn=N queued=M``; at a clean stop a ``final ...`` line of drop counts; when a
worker thread died it exits with status 1 like ``fleetdeck-agent``.

With ``logs.paths`` in the settings the real log tailer runs too, set up as
``fleetdeck-agent`` sets it up (positions recovered from the spool). An empty
``token`` reads the token file, again after each 401/403, as ``fleetdeck-agent`` does.
"""
from __future__ import annotations

import os
import signal
import sys
import threading

from agents.agent import Agent, WorkerDied, install_signal_handlers
from agents.client import IngestClient
from agents.config import load_agent_config, read_token_file
from agents.spool import Spool


class FaultyClient(IngestClient):
    def __init__(self, fault_path: str, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.fault_path = fault_path

    def push_body(self, body: bytes) -> dict:
        if os.path.exists(self.fault_path):
            raise RuntimeError("injected sender fault")
        return super().push_body(body)


class SeqAgent(Agent):
    def _path(self, name: str) -> str:
        return os.path.join(self.config.state_dir, name)

    def batch_handed_off(self, batch: dict, spool_seq: int | None = None) -> None:
        flag = self._path("crash_after_spool")
        if spool_seq is not None and os.path.exists(flag) and any(r["source"] != "seq" for r in batch["logs"]):
            os.unlink(flag)
            os.kill(os.getpid(), signal.SIGKILL)
        super().batch_handed_off(batch, spool_seq)

    def _cycle(self) -> None:
        if os.path.exists(self._path("pause")):
            if self._held:  # samples held for a full spool still go to it
                self._flush_held()
            return
        super()._cycle()

    def collect_batch(self) -> dict:
        try:
            with open(self._path("seq_next")) as fh:
                seq = int(fh.read().strip() or 1)
        except FileNotFoundError:
            seq = 1
        # Atomically: a kill -9 must never leave an empty file behind (numbers would repeat).
        with open(self._path("seq_next.tmp"), "w") as fh:
            fh.write(str(seq + 1))
        os.replace(self._path("seq_next.tmp"), self._path("seq_next"))
        batch = super().collect_batch()
        ts = batch["metrics"][0]["points"][0][0] if batch["metrics"] else int(self.clock() * 1000)
        batch["metrics"].append({"name": "fleetdeck_test_seq", "type": "gauge", "labels": {},
                                 "points": [[ts, float(seq)]]})
        batch["logs"].append({"ts": ts, "source": "seq", "line": f"seq={seq}", "labels": {}})
        batch["_seq"] = seq
        return batch


def main(path: str) -> int:
    config = load_agent_config(path)
    spool = Spool(os.path.join(config.state_dir, "spool"), config.spool_max_bytes, config.spool_max_age,
                  config.spool_fsync)
    stats = spool.snapshot()
    print(f"spool torn={stats.torn_records} queued={stats.queued}", flush=True)
    durable = open(os.path.join(config.state_dir, "durable.log"), "a", buffering=1)  # noqa: SIM115

    def on_durable(batch: dict) -> None:
        if "_seq" not in batch:  # a log-only batch (a backlog of file lines)
            return
        samples = sum(len(m["points"]) for m in batch["metrics"])
        durable.write(f"{batch['_seq']} {samples}\n")

    token_source = None
    if not config.token:
        config.token = read_token_file(config)
        token_source = lambda: read_token_file(config)  # noqa: E731
    log_tail, collectors = None, []
    if config.logs.paths:
        from collectors.logs import LogCollector

        log_tail = LogCollector(config.logs, config.state_dir, recovered=spool.last_extension())
        if log_tail.spool_seq is not None:
            spool.advance_seq(log_tail.spool_seq)
        collectors.append(log_tail)
    client = FaultyClient(os.path.join(config.state_dir, "sender_fault"), config.console_url, config.token,
                          config.timeout)
    agent = SeqAgent(config, collectors, client, spool=spool, on_durable=on_durable, logs=log_tail,
                     token_source=token_source)
    stop = threading.Event()
    install_signal_handlers(stop)
    try:
        agent.run_forever(stop)
    except WorkerDied as exc:
        print(f"worker died: {exc}", flush=True)
        return 1
    s = spool.snapshot()
    print(f"final dropped_batches={s.dropped_batches} dropped_samples={s.dropped_samples} "
          f"dropped_lines={s.dropped_lines} queued={s.queued} held_dropped_batches={agent._dropped_batches} "
          f"held_dropped_samples={agent._dropped_batch_samples}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
