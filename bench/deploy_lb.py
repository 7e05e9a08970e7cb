"""Benchmark: failed requests and time of rolling updates, rollbacks, cancels and
automatic rollbacks behind a load balancer that Fleetdeck drives (HAProxy runtime API,
nginx upstream file), against the same nginx with a fixed upstream of every host port of
the pool (a plain round-robin nobody tells about the deploy).

    python bench/deploy_lb.py [--replicas 3] [--runs 2] [--scenarios deploy,rollback,cancel,auto-rollback]
                              [--setups haproxy,nginx,nginx-static]

Needs a local dockerd, /bin/busybox (Debian's busybox-static), /usr/sbin/haproxy and
/usr/sbin/nginx; builds the test images of tests/docker_images.py and starts both
balancers on loopback (tests/balancers.py: retries off, so a request sent to a container
that is not serving fails instead of being retried elsewhere). Each setup deploys 1.0
(not measured), then ``--runs`` times each scenario in turn (maxSurge 1, maxUnavailable
0, http health check every 0.3 s) while a client sends GET / through the balancer back to
back, one connection per request, a new client per scenario:

- ``deploy``: a rolling update to 2.0 (or back to 1.0, alternately, when ``rollback`` is
  not run);
- ``rollback``: ``rollback`` of that deploy, back to 1.0;
- ``cancel``: a deploy of 2.0 cancelled once its second new container started (the old
  containers restored and healthy before the new ones go);
- ``auto-rollback``: a deploy of ``bad``, which serves ``/`` but never passes its health
  check, rolled back automatically.

Prints, per setup and scenario, the requests sent, the failed ones, the deploys' end
states and their median time; for ``auto-rollback`` also the answers that came from
``bad``, a container that never passed its health check.
"""
from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import docker  # noqa: E402

from console.audit.service import AuditService  # noqa: E402
from console.deploy.apps import parse_apps  # noqa: E402
from console.deploy.service import DeployService  # noqa: E402
from console.live import LiveBus  # noqa: E402
from console.storage import Database  # noqa: E402
from tests.balancers import Client, Haproxy, Nginx  # noqa: E402
from tests.integration.test_deploy_docker import free_port_range  # noqa: E402
from tests.docker_images import (  # noqa: E402
    build_test_images,
    remove_run_containers,
    run_app,
    run_labels,
    run_repository,
)

REPO_NAME = run_repository()


def app_config(name: str, replicas: int, base: int, balancer: dict | None) -> dict:
    app = {"target": {"image": REPO_NAME, "replicas": replicas, "stop_timeout": 1, "labels": run_labels(),
                      "ports": [f"127.0.0.1:{base}-{base + replicas}:8080"]},
           "health_check": {"type": "http", "path": "/healthz", "port": 8080, "interval": 0.3, "timeout": 1,
                            "retries": 3, "start_period": 1},
           "strategy": {"max_surge": 1, "max_unavailable": 0}}
    if balancer:
        app["load_balancer"] = balancer
    return parse_apps({name: app})


SCENARIOS = ("deploy", "rollback", "cancel", "auto-rollback")


async def finished(service: DeployService, deploy_id: int) -> dict:
    while (row := await service.get(deploy_id))["state"] in ("queued", "running"):
        await asyncio.sleep(0.05)
    return row


async def scenario(service: DeployService, docker_client, app: str, kind: str, version: str) -> tuple[str, float]:
    """Run one ``kind`` of SCENARIOS on ``app`` (serving 1.0, or 2.0 before a rollback);
    its end state and time."""
    t0 = time.perf_counter()
    if kind == "rollback":
        d = await service.rollback(app, None, "bench:runner", "bench")
    else:
        d = await service.create(app, {"deploy": version, "cancel": "2.0", "auto-rollback": "bad"}[kind],
                                 "bench:runner", "bench")
    if kind == "cancel":  # once the second new container started: one replaced, one on its way
        labels = [f"fleetdeck.app={app}", f"fleetdeck.deploy={d['id']}"]
        while len(docker_client.api.containers(all=True, filters={"label": labels})) < 2:
            if (await service.get(d["id"]))["state"] not in ("queued", "running"):
                break
            await asyncio.sleep(0.05)
        await service.cancel(d["id"], "bench:runner", "bench")
    row = await finished(service, d["id"])
    return row["state"], time.perf_counter() - t0


async def scenarios(service: DeployService, docker_client, app: str, kinds: list[str], runs: int,
                    port: int) -> dict[str, tuple[list[tuple[str, float]], int, int, int]]:
    """Per scenario: each run's (end state, seconds), the requests answered 200, the failed
    ones and the answers from ``bad`` (a container failing its health check), summed over
    the runs."""
    service.start()
    first = await finished(service, (await service.create(app, "1.0", "bench:runner", "bench"))["id"])
    if first["state"] != "succeeded":  # the initial release, not measured
        raise RuntimeError(f"deploy failed: {first['error']}")
    results: dict[str, tuple[list[tuple[str, float]], int, int, int]] = {}
    for i in range(runs):
        for kind in kinds:
            version = "2.0" if "rollback" in kinds or i % 2 == 0 else "1.0"
            client = Client(port)
            client.start()
            await asyncio.sleep(0.5)
            done = await scenario(service, docker_client, app, kind, version)
            await asyncio.sleep(0.5)
            client.stop()
            runs_of, ok, failed, bad = results.get(kind, ([], 0, 0, 0))
            results[kind] = (runs_of + [done], ok + client.ok, failed + len(client.failures),
                             bad + client.bodies.get("web bad", 0))
    return results


def run(setup: str, replicas: int, kinds: list[str], runs: int, tmp: Path,
        docker_client) -> dict[str, tuple[list[tuple[str, float]], int, int, int]]:
    app, base = run_app(f"bench-lb-{setup}"), free_port_range(replicas + 1)
    if setup == "haproxy":
        lb = Haproxy(tmp / setup, replicas + 1)
        balancer: dict | None = lb.config(drain_timeout=10)
    else:
        lb = Nginx(tmp / setup)
        balancer = lb.config(drain_timeout=10) if setup == "nginx" else None
        if setup == "nginx-static":  # every port of the pool, whatever runs there
            servers = "".join(f"    server 127.0.0.1:{p};\n" for p in range(base, base + replicas + 1))
            lb.upstream_file.write_text(f"upstream app {{\n{servers}}}\n")
            lb.proc.send_signal(1)
            time.sleep(1)
    db = Database(f"sqlite:///{tmp / (setup + '.db')}")
    db.migrate()
    service = DeployService(db, LiveBus(), AuditService(), app_config(app, replicas, base, balancer),
                            cleanup_interval=3600)
    try:
        return asyncio.run(scenarios(service, docker_client, app, kinds, runs, lb.port))
    finally:
        service.close()
        db.close()
        lb.close()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--replicas", type=int, default=3)
    parser.add_argument("--runs", type=int, default=2, help="runs of each scenario per setup")
    parser.add_argument("--scenarios", default="deploy", help=f"comma-separated, of {', '.join(SCENARIOS)}")
    parser.add_argument("--setups", default="haproxy,nginx,nginx-static")
    args = parser.parse_args()
    kinds = [k for k in SCENARIOS if k in args.scenarios.split(",")]
    setups = args.setups.split(",")
    if not kinds or len(kinds) != len(args.scenarios.split(",")) \
            or not set(setups) <= {"haproxy", "nginx", "nginx-static"}:
        parser.error(f"--scenarios takes {', '.join(SCENARIOS)}; --setups haproxy, nginx, nginx-static")
    client = docker.from_env(timeout=60)
    refs = build_test_images(client, REPO_NAME, ("1.0", "2.0", "bad"))
    print(f"{args.replicas} replicas (maxSurge 1, maxUnavailable 0), {args.runs} run(s) of each scenario per setup")
    try:
        with tempfile.TemporaryDirectory() as tmp:
            for setup in setups:
                for kind, (done, ok, failed, bad) in run(setup, args.replicas, kinds, args.runs, Path(tmp),
                                                         client).items():
                    total = ok + failed
                    times = [t for _, t in done]
                    print(f"{setup:13s} {kind:13s} requests {total:6d}  failed {failed:5d} "
                          f"({100 * failed / max(total, 1):.2f} %)  "
                          f"{', '.join(f'{state} {t:.2f}' for state, t in done)} s  median {statistics.median(times):.2f} s"
                          + (f"  answers from bad {bad}" if kind == "auto-rollback" else ""))
    finally:
        remove_run_containers(client)
        for ref in refs:
            client.images.remove(ref, force=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
