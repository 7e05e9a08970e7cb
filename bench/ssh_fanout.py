"""Benchmark: a whole SSH deploy to N hosts through the console, serial against parallel.

    python bench/ssh_fanout.py [--hosts 20] [--restart 1.0] [--runs 1] [--login-home]

Each host is its own real OpenSSH sshd on a loopback port with its own host key and
client key (tests/sshd.py), pinned in the console's known hosts (RejectPolicy), its key
an encrypted console secret; the console is a real one (tests/harness.py) over HTTP. Two
apps deploy the same release to the same hosts (each under its own ``deploy_to``):

- ``serial``: ``batches: serial`` (one host at a time, as a cautious rollout does);
- ``parallel``: one batch of every host, ``max_parallel`` = the number of hosts.

A deploy is the driver's full path: pre-flight of every host (connect, host key, current
release, ``df``), then per host upload of a small tar artifact over SFTP, ``tar -x``, one
build step (``sh build.sh``), the marker, the atomic switch of ``current``, a restart step
(``sleep --restart`` seconds: the time a service takes to restart) and a ``command``
health check, then the cleanup of old releases. Each run deploys a new version with both
apps, alternating which goes first; the wall time is the deploy's ``duration_s`` (from
running to its final state, as stored by the console, with every event stored). Prints
per-mode wall times, the medians and the ratio serial/parallel (target: >= 8x), and where
a host's time goes: the median, over the hosts of each deploy of the first run, of the time from
each of the host's log lines to the next, by the kind of the later line (connect, ready,
uploaded, step ok, restart ok, healthy, ...). Two cores are shared by the console, the
client and every sshd here.

The hosts' sessions get an empty ``HOME`` (``SshServer(clean_home=True)``): the login
user here is the machine's root, whose ``~/.bashrc`` runs ``pyenv init`` in every shell
(~0.5 s per remote command, against ~0.08 s without it), which is this machine, not a
deploy host. ``--login-home`` keeps the real home to measure that case too.
"""
from __future__ import annotations

import argparse
import io
import os
import statistics
import sys
import tarfile
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests.harness import ConsoleHarness  # noqa: E402
from tests.sshd import SshServer  # noqa: E402


def write_artifact(directory: Path, version: str) -> None:
    with tarfile.open(directory / f"app-{version}.tar", "w") as tar:
        for name, text in (("VERSION", version + "\n"), ("build.sh", "cat VERSION > built\n")):
            data = text.encode()
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))


def deploy(harness: ConsoleHarness, app: str, version: str) -> dict:
    resp = harness.request("POST", f"/api/v1/apps/{app}/deploys", {"version": version}, token=harness.token)
    if resp.status != 202:
        raise RuntimeError(f"{app} {version}: {resp.status} {resp.body!r}")
    deploy_id = resp.json()["id"]
    while True:
        d = harness.request("GET", f"/api/v1/deploys/{deploy_id}", token=harness.token).json()
        if d["state"] not in ("queued", "running"):
            if d["state"] != "succeeded":
                raise RuntimeError(f"{app} {version}: {d['state']}: {d['error']}")
            return d
        time.sleep(0.05)


KINDS = (("ready", "pre-flight: current, free disk (SFTP)"),
         ("uploaded", "rm/mkdir (SFTP) + upload"), ("step", "tar -x, then a step's start / end"),
         ("current", "marker + switch (SFTP)"), ("restart", "restart start / end"),
         ("healthy", "health check command"))


def breakdown(harness: ConsoleHarness, deploy_id: int, mode: str) -> None:
    """Per host, the time from each of its log lines (and its batch's start) to the next,
    by the later line's kind."""
    events = harness.request("GET", f"/api/v1/deploys/{deploy_id}/events?limit=5000", token=harness.token).json()
    by_host: dict[str, list[tuple[float, str]]] = {}
    connects: list[float] = []
    for e in events["events"]:
        host = e["data"].get("host")
        if host:
            by_host.setdefault(host, []).append((e["ts"], e["message"].split("] ", 1)[-1].split()[0].rstrip(":")))
            if "connect_ms" in e["data"]:
                connects.append(e["data"]["connect_ms"] / 1000)
        elif (e["step"] or "").startswith("batch") and e["data"].get("state") == "running":
            for name in e["data"].get("hosts") or []:
                by_host.setdefault(name, []).append((e["ts"], "batch"))
    spans: dict[str, list[float]] = {}
    for lines in by_host.values():
        for (before, _), (after, word) in zip(lines, lines[1:]):
            spans.setdefault(word, []).append(after - before)
    print(f"where a host's time goes ({mode} deploy; median over hosts, seconds from the host's previous line):")
    if connects:
        print(f"  {'connect (TCP, kex, host key, auth)':42s} {statistics.median(connects):6.3f} s (n={len(connects)})")
    for word, label in KINDS:
        if word in spans:
            print(f"  {label:42s} {statistics.median(spans[word]):6.3f} s (n={len(spans[word])})")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--hosts", type=int, default=20)
    ap.add_argument("--restart", type=float, default=1.0, help="seconds the restart step sleeps on each host")
    ap.add_argument("--runs", type=int, default=1)
    ap.add_argument("--login-home", action="store_true",
                    help="sessions keep the login user's real HOME and its shell startup files")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        servers: list[SshServer] = []
        harness = None
        try:
            for i in range(args.hosts):
                servers.append(SshServer(root / f"sshd-{i}", clean_home=not args.login_home).start())
            names = [f"h{i}" for i in range(args.hosts)]
            inventory = {"defaults": {"user": servers[0].user},
                         "hosts": {n: {"address": "127.0.0.1", "port": s.port, "key": f"key-{n}"}
                                   for n, s in zip(names, servers)}}
            (root / "artifacts").mkdir()
            common = {"hosts": names, "artifact": str(root / "artifacts" / "app-{version}.tar"), "extract": True,
                      "steps": [["sh", "build.sh"]], "restart": [["sleep", f"{args.restart:g}"]],
                      "keep_releases": 3}
            health = {"type": "command", "command": ["test", "-f", "{current}/built"], "interval": 0.2,
                      "start_period": 0, "retries": 3}
            apps = {"serial": {"driver": "ssh", "timeout": 3600, "health_check": health, "target": {
                        **common, "deploy_to": str(root / "srv" / "{host}" / "serial"),
                        "batches": {"type": "serial"}, "max_parallel": 1}},
                    "parallel": {"driver": "ssh", "timeout": 3600, "health_check": health, "target": {
                        **common, "deploy_to": str(root / "srv" / "{host}" / "parallel"),
                        "batches": {"type": "fixed", "size": args.hosts}, "max_parallel": args.hosts}}}
            harness = ConsoleHarness(root / "console", apps=apps, inventory=inventory).start()
            s = harness.services
            for n, srv in zip(names, servers):
                s.db.run(s.secrets.put, f"key-{n}", "ssh_key", srv.client_key.read_text(), "bench")
                key_type, key_b64 = srv.known_hosts_line.split()[1:3]
                s.db.run(s.known_hosts.trust, s.inventory.hosts[n], key_type, key_b64, "bench")
            harness.token = harness.api_token("deployer", "bench")
            print(f"{args.hosts} sshd instances on loopback ({'real' if args.login_home else 'empty'} HOME); "
                  f"restart step sleep {args.restart:g} s; "
                  f"{args.runs} run(s); load average {os.getloadavg()[0]:.1f}", flush=True)
            walls: dict[str, list[float]] = {"serial": [], "parallel": []}
            for run in range(args.runs):
                version = f"1.{run}"
                write_artifact(root / "artifacts", version)
                order = ("serial", "parallel") if run % 2 == 0 else ("parallel", "serial")
                for mode in order:
                    d = deploy(harness, mode, version)
                    if run == 0:
                        breakdown(harness, d["id"], mode)
                    walls[mode].append(d["duration_s"])
                    print(f"run {run + 1} {mode:8s} {d['duration_s']:7.2f} s (load {os.getloadavg()[0]:.1f})",
                          flush=True)
            serial, parallel = statistics.median(walls["serial"]), statistics.median(walls["parallel"])
            print(f"median whole deploy: serial {serial:.2f} s, parallel ({args.hosts} at once) {parallel:.2f} s, "
                  f"speed-up {serial / parallel:.1f}x (target >= 8x); load average {os.getloadavg()[0]:.1f}")
        finally:
            if harness is not None:
                harness.close()
            for srv in servers:
                srv.stop()


if __name__ == "__main__":
    main()
