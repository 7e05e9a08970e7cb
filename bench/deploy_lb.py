"""Benchmark: failed requests and deploy time of rolling updates behind a load balancer
that Fleetdeck drives (HAProxy runtime API, nginx upstream file), against the same nginx
with a fixed upstream of every host port of the pool (a plain round-robin nobody tells
about the deploy).

    python bench/deploy_lb.py [--replicas 3] [--runs 2]

Needs a local dockerd, /bin/busybox (Debian's busybox-static), /usr/sbin/haproxy and
/usr/sbin/nginx; builds the test images of tests/docker_images.py and starts both
balancers on loopback (tests/balancers.py: retries off, so a request sent to a container
that is not serving fails instead of being retried elsewhere). Each setup deploys 1.0,
then 2.0 and 1.0 alternately ``--runs`` times (maxSurge 1, maxUnavailable 0, http health
check every 0.3 s) while a client sends GET / through the balancer back to back, one
connection per request. Prints, per setup, the requests sent, the failed ones and the
median deploy time.
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


async def deploys(service: DeployService, app: str, versions: list[str], port: int) -> tuple[list[float], Client]:
    service.start()

    async def deploy(version: str) -> float:
        t0 = time.perf_counter()
        d = await service.create(app, version, "bench:runner", "bench")
        while (row := await service.get(d["id"]))["state"] in ("queued", "running"):
            await asyncio.sleep(0.05)
        if row["state"] != "succeeded":
            raise RuntimeError(f"deploy failed: {row['error']}")
        return time.perf_counter() - t0

    await deploy("1.0")  # initial release, not timed
    client = Client(port)
    client.start()
    await asyncio.sleep(0.5)
    times = [await deploy(v) for v in versions]
    await asyncio.sleep(0.5)
    return times, client.stop()


def run(setup: str, replicas: int, versions: list[str], tmp: Path) -> tuple[list[float], Client]:
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
        return asyncio.run(deploys(service, app, versions, lb.port))
    finally:
        service.close()
        db.close()
        lb.close()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--replicas", type=int, default=3)
    parser.add_argument("--runs", type=int, default=2, help="timed rolling updates per setup")
    args = parser.parse_args()
    client = docker.from_env(timeout=60)
    refs = build_test_images(client, REPO_NAME, ("1.0", "2.0"))
    versions = ["2.0" if i % 2 == 0 else "1.0" for i in range(args.runs)]
    print(f"rolling updates of {args.replicas} replicas (maxSurge 1, maxUnavailable 0), {args.runs} per setup")
    try:
        with tempfile.TemporaryDirectory() as tmp:
            for setup in ("haproxy", "nginx", "nginx-static"):
                times, c = run(setup, args.replicas, versions, Path(tmp))
                total = c.ok + len(c.failures)
                print(f"{setup:13s} requests {total:6d}  failed {len(c.failures):5d} "
                      f"({100 * len(c.failures) / max(total, 1):.2f} %)  deploy {', '.join(f'{t:.2f}' for t in times)} s"
                      f"  median {statistics.median(times):.2f} s")
    finally:
        remove_run_containers(client)
        for ref in refs:
            client.images.remove(ref, force=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
