"""Benchmark: a 5-replica health-gated rolling update through Fleetdeck's deploy service,
timed against a plain docker-py script making the same Docker calls, in the same run.

    python bench/deploy_rolling.py [--replicas 5] [--runs 3]

Needs a local dockerd and /bin/busybox (Debian's busybox-static); builds the test images
of tests/docker_images.py. Both sides deploy 1.0 -> 2.0 -> 1.0 ... alternately, with
maxSurge 1 and maxUnavailable 0, waiting on the image's HEALTHCHECK (1 s interval) and
polling it every 0.25 s. Prints the wall time of each run, the medians and their ratio
(target: Fleetdeck at most 1.3x the plain script).
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
from console.deploy.drivers.docker import DOCKER_HEALTH_POLL_S  # noqa: E402
from console.deploy.service import DeployService  # noqa: E402
from console.live import LiveBus  # noqa: E402
from console.storage import Database  # noqa: E402
from tests.docker_images import (  # noqa: E402
    build_test_images,
    remove_run_containers,
    run_app,
    run_labels,
    run_repository,
)

# This run's images and app names, so the bench never touches anyone else's containers.
REPO_NAME = run_repository()
PLAIN_APP, FD_APP = run_app("bench-plain"), run_app("bench-fd")


def cleanup(client, app: str) -> None:
    remove_run_containers(client, app)


# -- the plain script: the same calls, in the same order, nothing else --------------------
def plain_rolling_update(client, app: str, version: str, replicas: int, deploy_id: int) -> None:
    old = client.containers.list(filters={"label": [f"fleetdeck.app={app}"], "status": "running"})
    running_old, ready, stopped = list(old), 0, []
    n = 0
    while ready < replicas or running_old:
        if running_old and len(running_old) + ready - replicas > 0:
            c = running_old.pop(0)
            c.stop(timeout=1)
            stopped.append(c)
        if ready < replicas and len(running_old) + ready < replicas + 1:
            n += 1
            c = client.containers.create(
                f"{REPO_NAME}:{version}", name=f"{app}-{deploy_id}-{n}", detach=True,
                labels={"fleetdeck.app": app, "fleetdeck.version": version, "fleetdeck.deploy": str(deploy_id),
                        "fleetdeck.slot": str(n), **run_labels()},
                restart_policy={"Name": "unless-stopped"})
            c.start()
            while True:
                c.reload()
                if (c.attrs["State"].get("Health") or {}).get("Status") == "healthy":
                    break
                time.sleep(DOCKER_HEALTH_POLL_S)
            ready += 1
    for c in stopped:
        c.remove()


def run_plain(client, replicas: int, versions: list[str]) -> list[float]:
    app = PLAIN_APP
    cleanup(client, app)
    plain_rolling_update(client, app, "2.0", replicas, 0)  # initial release, not timed
    times = []
    for i, version in enumerate(versions, start=1):
        t0 = time.perf_counter()
        plain_rolling_update(client, app, version, replicas, i)
        times.append(time.perf_counter() - t0)
    cleanup(client, app)
    return times


# -- Fleetdeck: the deploy service with the Docker driver, SQLite storage and audit -------
async def fleetdeck_runs(service: DeployService, versions: list[str]) -> list[float]:
    service.start()

    async def deploy(version: str) -> float:
        t0 = time.perf_counter()
        d = await service.create(FD_APP, version, "bench:runner", "bench")
        while (row := await service.get(d["id"]))["state"] in ("queued", "running"):
            await asyncio.sleep(0.05)
        if row["state"] != "succeeded":
            raise RuntimeError(f"deploy failed: {row['error']}")
        return time.perf_counter() - t0

    await deploy("2.0")  # initial release, not timed
    return [await deploy(v) for v in versions]


def run_fleetdeck(client, replicas: int, versions: list[str], tmp: Path) -> list[float]:
    cleanup(client, FD_APP)
    apps = parse_apps({FD_APP: {"target": {"image": REPO_NAME, "replicas": replicas, "stop_timeout": 1,
                                           "labels": run_labels()},
                                "strategy": {"max_surge": 1, "max_unavailable": 0}}})
    db = Database(f"sqlite:///{tmp / 'bench.db'}")
    db.migrate()
    service = DeployService(db, LiveBus(), AuditService(), apps, cleanup_interval=3600)
    try:
        return asyncio.run(fleetdeck_runs(service, versions))
    finally:
        service.close()
        db.close()
        cleanup(client, FD_APP)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--replicas", type=int, default=5)
    parser.add_argument("--runs", type=int, default=3, help="timed rolling updates per side")
    args = parser.parse_args()
    client = docker.from_env(timeout=60)
    refs = build_test_images(client, REPO_NAME, ("1.0", "2.0"))
    versions = ["1.0" if i % 2 == 0 else "2.0" for i in range(args.runs)]
    plain, fleet = [], []
    try:
        with tempfile.TemporaryDirectory() as tmp:
            # Interleave the sides so that machine load affects both alike.
            for version in versions:
                plain += run_plain(client, args.replicas, [version])
                fleet += run_fleetdeck(client, args.replicas, [version], Path(tmp))
    finally:
        remove_run_containers(client)
        for ref in refs:
            client.images.remove(ref)
    p, f = statistics.median(plain), statistics.median(fleet)
    print(f"rolling update of {args.replicas} replicas (maxSurge 1, maxUnavailable 0, HEALTHCHECK 1 s), "
          f"{args.runs} runs per side")
    print(f"plain docker-py script: {', '.join(f'{t:.2f}' for t in plain)} s   median {p:.2f} s")
    print(f"fleetdeck deploy:       {', '.join(f'{t:.2f}' for t in fleet)} s   median {f:.2f} s")
    print(f"ratio fleetdeck/plain:  {f / p:.2f}x (target <= 1.30x)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
