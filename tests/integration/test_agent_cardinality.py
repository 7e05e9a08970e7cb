"""Container interfaces on a real Docker host: the host input leaves their series out by
default (collector_options.host.netdev_device_exclude / netclass_ignored_devices) and
keeps them when the excludes are emptied."""
from __future__ import annotations

import os
import time

import pytest

from agents.agent import Agent
from agents.config import AgentConfig
from collectors.host import HostCollector
from tests.docker_images import run_labels

pytestmark = pytest.mark.skipif(not os.path.isdir("/sys/class/net"), reason="needs Linux sysfs")


def _host_veth(container) -> str:
    """The host-side interface of the container's eth0 (its peer's ifindex is eth0's iflink)."""
    code, out = container.exec_run(["cat", "/sys/class/net/eth0/iflink"])
    assert code == 0, out
    peer = int(out.decode().strip())
    for device in os.listdir("/sys/class/net"):
        with open(f"/sys/class/net/{device}/ifindex") as fh:
            if int(fh.read()) == peer:
                return device
    raise AssertionError(f"no host interface with ifindex {peer}")


class Recorder:
    def push(self, batch: dict) -> dict:
        return {}


def test_container_veth_interfaces_add_no_series_by_default(docker_client, docker_images):
    containers = [docker_client.containers.run(f"{docker_images}:1.0", detach=True, labels=run_labels())
                  for _ in range(3)]
    try:
        veths = {_host_veth(c) for c in containers}
        assert len(veths) == 3 and all(v.startswith("veth") for v in veths), veths
        deadline = time.monotonic() + 10
        while not veths <= {line.split(":")[0].strip() for line in open("/proc/net/dev").readlines()[2:]}:
            assert time.monotonic() < deadline, "the veth interfaces never showed in /proc/net/dev"
            time.sleep(0.1)

        def network_devices(collector: HostCollector) -> set[str]:
            batch = Agent(AgentConfig(host="card-test"), [collector], Recorder()).collect_batch()
            return {m["labels"]["device"] for m in batch["metrics"] if m["name"].startswith("node_network_")}

        default = network_devices(HostCollector())
        assert not veths & default and not any(d.startswith(("veth", "docker", "br-")) for d in default)
        assert "lo" in default
        everything = network_devices(HostCollector(netdev_device_exclude="", netclass_ignored_devices=""))
        assert veths <= everything
    finally:
        for c in containers:
            c.remove(force=True)
