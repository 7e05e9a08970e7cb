"""A real Prometheus serving backfilled samples: ``promtool tsdb create-blocks-from
openmetrics`` writes the blocks, then ``prometheus`` starts on them on a loopback port."""
from __future__ import annotations

import shutil
import subprocess
import time
import urllib.request
from pathlib import Path

from tests.conftest import need
from tests.integration.procs import free_port


def openmetrics(series: list[tuple[str, dict, list]]) -> str:
    """``[(name, labels, [(ts_ms, value), ...]), ...]`` -> OpenMetrics text (each name one
    gauge family, samples in time order)."""
    families: dict[str, list[str]] = {}
    for name, labels, points in series:
        body = ",".join(f'{k}="{v}"' for k, v in sorted(labels.items()))
        lines = families.setdefault(name, [])
        lines.extend(f"{name}{{{body}}} {v!r} {ts / 1000:.3f}" for ts, v in points)
    out = []
    for name, lines in families.items():
        out.append(f"# TYPE {name} gauge")
        out.extend(lines)
    return "\n".join(out) + "\n# EOF\n"


class TsdbPrometheus:
    """``url`` of a Prometheus started on the TSDB in ``work/tsdb`` (blocks already written)
    on a loopback port, keeping ``retention`` of it; ``close()`` stops it. Raises
    RuntimeError (with the end of its log) when it is not ready within ``ready_s``."""

    def __init__(self, work: Path, retention: str = "30d", ready_s: float = 60.0) -> None:
        (work / "prometheus.yml").write_text("global: {}\n")
        port = free_port()
        self.log = work / "prometheus.log"
        self.proc = subprocess.Popen(["prometheus", f"--config.file={work / 'prometheus.yml'}",
                                      f"--storage.tsdb.path={work / 'tsdb'}",
                                      f"--web.listen-address=127.0.0.1:{port}",
                                      f"--storage.tsdb.retention.time={retention}"],
                                     stdout=subprocess.DEVNULL, stderr=open(self.log, "wb"))
        self.url = f"http://127.0.0.1:{port}"
        deadline = time.time() + ready_s
        while time.time() < deadline:
            try:
                if urllib.request.urlopen(self.url + "/-/ready", timeout=2).status == 200:
                    return
            except OSError:
                time.sleep(0.3)
        self.close()
        raise RuntimeError(f"prometheus did not become ready: {self.log.read_text()[-2000:]}")

    def close(self) -> None:
        self.proc.terminate()
        self.proc.wait(30)


class BackfilledPrometheus(TsdbPrometheus):
    """``url`` of a running Prometheus holding ``text`` (OpenMetrics); ``close()`` stops it."""

    def __init__(self, work: Path, text: str) -> None:
        if not (shutil.which("prometheus") and shutil.which("promtool")):
            need("prometheus", "prometheus/promtool not installed (apt-get install prometheus)")
        (work / "data.om").write_text(text)
        subprocess.run(["promtool", "tsdb", "create-blocks-from", "openmetrics", str(work / "data.om"),
                        str(work / "tsdb")], check=True, capture_output=True, timeout=300)
        super().__init__(work)
