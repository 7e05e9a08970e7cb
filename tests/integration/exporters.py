"""Real exporters for the Prometheus interop tests: node_exporter on a loopback port."""
from __future__ import annotations

import shutil
import subprocess
import urllib.request
from pathlib import Path

from tests.conftest import need
from tests.harness import wait_for
from tests.integration.procs import free_port


def start_process(cmd: list[str], log_path: Path, ready_url: str, what: str) -> subprocess.Popen:
    """Start ``cmd`` (stderr to ``log_path``) and wait until ``ready_url`` answers 200."""
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=open(log_path, "wb"))  # noqa: SIM115

    def ready() -> bool:
        if proc.poll() is not None:
            raise AssertionError(f"{what} exited {proc.returncode}: {log_path.read_text()[-2000:]}")
        try:
            return urllib.request.urlopen(ready_url, timeout=2).status == 200
        except OSError:
            return False

    wait_for(ready, 60, f"{what} to be ready")
    return proc


def stop_process(proc: subprocess.Popen) -> None:
    proc.terminate()
    try:
        proc.wait(30)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(10)


def start_node_exporter(work: Path, textfile_dir: Path, only_textfile: bool = False) -> tuple[str, subprocess.Popen]:
    """node_exporter on a free loopback port reading ``textfile_dir``; -> (host:port, process).
    ``only_textfile``: every other collector off. Skips (or fails, when required) without it."""
    binary = shutil.which("prometheus-node-exporter") or shutil.which("node_exporter")
    if not binary:
        need("prometheus", "prometheus-node-exporter is not installed (apt-get install prometheus-node-exporter)")
    port = free_port()
    cmd = [binary, f"--web.listen-address=127.0.0.1:{port}", f"--collector.textfile.directory={textfile_dir}"]
    if only_textfile:
        cmd += ["--collector.disable-defaults", "--collector.textfile"]
    else:
        # Tests running beside this one mount tmpfs under /tmp and start containers (veth and
        # bridge interfaces): series that come and go mid-test. Leave them out, as
        # node_exporter's own defaults leave out /mnt and /var/lib/docker, so a comparison
        # sees only this machine's steady filesystems and interfaces.
        cmd += [r"--collector.filesystem.mount-points-exclude=^/(dev|proc|run|sys|mnt|media|tmp|"
                r"var/lib/docker/.+|var/lib/containers/storage/.+)($|/)",
                r"--collector.netdev.device-exclude=^(veth.*|docker.*|br-.*)$",
                r"--collector.netclass.ignored-devices=^(veth.*|docker.*|br-.*)$",
                r"--collector.arp.device-exclude=^(veth.*|docker.*|br-.*)$"]
    proc = start_process(cmd, work / f"node-exporter-{port}.log", f"http://127.0.0.1:{port}/metrics",
                         "node_exporter")
    return f"127.0.0.1:{port}", proc
