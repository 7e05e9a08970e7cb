"""HostCollector against this machine's /proc and /sys, and against fixture trees."""

from __future__ import annotations

import logging
import os
import re
import threading
from pathlib import Path

import pytest

from collectors import Collector, Sample, available_collectors, build_collectors, procfs
from collectors.host import (
    CPU_MODES,
    DEFAULT_DISK_DEVICES_EXCLUDE,
    DEFAULT_FS_TYPES_EXCLUDE,
    DEFAULT_MOUNT_POINTS_EXCLUDE,
    HostCollector,
)
from collectors.host_portable import portable_samples

METRIC_NAME = re.compile(r"^[a-zA-Z_:][a-zA-Z0-9_:]*$")
LABEL_NAME = re.compile(r"^[a-zA-Z_][a-zA-Z0-9_]*$")
USER_HZ = os.sysconf("SC_CLK_TCK")

linux_only = pytest.mark.skipif(not os.path.isdir("/proc/self"), reason="needs Linux /proc")


def key(sample: Sample) -> tuple:
    return sample.name, tuple(sorted(sample.labels.items()))


def by_key(samples) -> dict[tuple, Sample]:
    return {key(s): s for s in samples}


def value(samples, name: str, **labels) -> float:
    matches = [s.value for s in samples if s.name == name and all(s.labels.get(k) == v for k, v in labels.items())]
    assert len(matches) == 1, f"{name}{labels}: {len(matches)} matches"
    return matches[0]


# -- this machine ----------------------------------------------------------


@linux_only
def test_real_host_series_are_many_well_formed_and_unique():
    samples = list(HostCollector().collect())
    assert len(samples) >= 300
    assert len(by_key(samples)) == len(samples), "duplicate series"
    for s in samples:
        assert isinstance(s, Sample)
        assert METRIC_NAME.match(s.name), s.name
        assert all(LABEL_NAME.match(k) and isinstance(v, str) for k, v in s.labels.items()), s
        assert type(s.value) is float, s
        assert s.type in ("gauge", "counter"), s
        if s.name.endswith("_total"):
            assert s.type == "counter", s
    names = {s.name for s in samples}
    for expected in ("node_load1", "node_memory_MemTotal_bytes", "node_memory_MemAvailable_bytes",
                     "node_boot_time_seconds", "node_context_switches_total", "node_network_receive_bytes_total",
                     "node_filefd_allocated", "node_time_seconds", "node_forks_total", "node_intr_total"):
        assert expected in names, expected


@linux_only
def test_real_host_reports_every_cpu_mode_per_cpu():
    samples = list(HostCollector().collect())
    cpu_lines = [ln for ln in Path("/proc/stat").read_text().splitlines() if re.match(r"cpu\d+ ", ln)]
    modes: dict[str, set[str]] = {}
    for s in samples:
        if s.name == "node_cpu_seconds_total":
            modes.setdefault(s.labels["cpu"], set()).add(s.labels["mode"])
    assert len(modes) == len(cpu_lines) >= 1
    assert all(found == set(CPU_MODES) for found in modes.values()), modes


@linux_only
def test_real_host_counters_do_not_decrease():
    collector = HostCollector()
    first = by_key(collector.collect())
    second = by_key(collector.collect())
    counters = [k for k, s in first.items() if s.type == "counter"]
    assert len(counters) > 100
    for k in counters:
        if k in second:
            assert second[k].value >= first[k].value, k


@linux_only
def test_real_host_filesystem_and_disk_filters():
    samples = list(HostCollector().collect())
    mountpoints = {s.labels["mountpoint"] for s in samples if s.name == "node_filesystem_size_bytes"}
    assert mountpoints, "no filesystem reported"
    assert not any(re.match(DEFAULT_MOUNT_POINTS_EXCLUDE, m) for m in mountpoints)
    fstypes = {s.labels["fstype"] for s in samples if s.name.startswith("node_filesystem_")}
    assert not any(re.match(DEFAULT_FS_TYPES_EXCLUDE, t) for t in fstypes)
    disks = {s.labels["device"] for s in samples if s.name.startswith("node_disk_")}
    assert not any(re.match(DEFAULT_DISK_DEVICES_EXCLUDE, d) for d in disks)


def test_portable_psutil_path_uses_the_same_names():
    samples = portable_samples(re.compile(DEFAULT_FS_TYPES_EXCLUDE), re.compile(DEFAULT_MOUNT_POINTS_EXCLUDE),
                               re.compile(DEFAULT_DISK_DEVICES_EXCLUDE), re.compile("^lo$"))
    assert not [s for s in samples if s.name.startswith("node_network_") and s.labels["device"] == "lo"]
    names = {s.name for s in samples}
    assert {"node_cpu_seconds_total", "node_load1", "node_memory_MemTotal_bytes",
            "node_memory_MemAvailable_bytes", "node_boot_time_seconds"} <= names
    assert all(METRIC_NAME.match(s.name) and type(s.value) is float for s in samples)


# -- fixture trees -----------------------------------------------------------

STAT = """\
cpu  300 20 100 5000 40 0 10 0 0 0
cpu0 100 10 50 2500 20 0 5 0 7 1
cpu1 200 10 50 2500 20 0 5 3 0 0
intr 123456 0 9 0 0
ctxt 987654
btime 1700000000
processes 4321
procs_running 3
procs_blocked 1
softirq 1 0 1 0 0 0 0 0 0 0 0
"""

MEMINFO = """\
MemTotal:       16384 kB
MemFree:         4096 kB
MemAvailable:    8192 kB
Buffers:          512 kB
Cached:          2048 kB
Active(anon):     100 kB
Inactive(file):   200 kB
SwapTotal:          0 kB
HugePages_Total:    4
Hugepagesize:    2048 kB
"""

NET_DEV = """\
Inter-|   Receive                                                |  Transmit
 face |bytes    packets errs drop fifo frame compressed multicast|bytes    packets errs drop fifo colls carrier compressed
    lo: 3193 29 0 0 0 0 0 0 3193 29 0 0 0 0 0 0
  eth0: 1000 10 1 2 3 4 5 6 2000 20 7 8 9 10 11 12
"""

DISKSTATS = """\
   8       0 sda 100 2 4000 1500 50 3 8000 2500 1 3000 4000 6 0 48 70 9 250
   8       1 sda1 90 2 3900 1400 50 3 8000 2500 0 2900 3900 6 0 48 70 0 0
 259       0 nvme0n1 10 0 80 5 20 0 160 10 0 12 15
 259       1 nvme0n1p1 10 0 80 5 20 0 160 10 0 12 15
   7       0 loop0 1 0 2 0 0 0 0 0 0 0 0 0 0 0 0 0 0
 253       0 dm-0 5 0 16 1 6 0 24 2 0 3 3 0 0 0 0 0 0
"""

PSI = "some avg10=0.00 avg60=0.00 avg300=0.00 total={}\nfull avg10=0.00 avg60=0.00 avg300=0.00 total={}\n"
PRESSURE = {"cpu": PSI.format(2500000, 0), "io": PSI.format(1500000, 500000), "memory": PSI.format(3000000, 1000000)}

SNMP = """\
Ip: Forwarding DefaultTTL InReceives
Ip: 1 64 555
Tcp: RtoAlgorithm ActiveOpens PassiveOpens InErrs CurrEstab InSegs
Tcp: 1 17 2 0 5 4803
Udp: InDatagrams NoPorts InErrors OutDatagrams
Udp: 33 1 0 34
"""

SOCKSTAT = "sockets: used 11\nTCP: inuse 1 orphan 0 tw 2 alloc 3 mem 41\nFRAG: inuse 0 memory 0\n"


def write_tree(root: Path, files: dict[str, str]) -> Path:
    for rel, text in files.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return root


@pytest.fixture
def proc_root(tmp_path: Path) -> Path:
    files = {
        "stat": STAT,
        "meminfo": MEMINFO,
        "net/dev": NET_DEV,
        "diskstats": DISKSTATS,
        "net/snmp": SNMP,
        "net/sockstat": SOCKSTAT,
        "sys/fs/file-nr": "376\t0\t2466183\n",
        "vmstat": "nr_free_pages 1\npgfault 2429119\npgmajfault 739\noom_kill 2\nworkingset_refault_anon 5\n",
        "1/mounts": "",
    }
    files.update({f"pressure/{res}": text for res, text in PRESSURE.items()})
    return write_tree(tmp_path / "proc", files)


def fixture_collector(proc_root: Path, tmp_path: Path, **options) -> HostCollector:
    return HostCollector(proc_root=str(proc_root), sys_root=str(tmp_path / "no-sys"),
                         rootfs=str(tmp_path / "rootfs"), **options)


def test_fixture_values_are_parsed_exactly(proc_root, tmp_path):
    samples = list(fixture_collector(proc_root, tmp_path).collect())

    assert value(samples, "node_memory_MemTotal_bytes") == 16384 * 1024
    assert value(samples, "node_memory_MemAvailable_bytes") == 8192 * 1024
    assert value(samples, "node_memory_Active_anon_bytes") == 100 * 1024
    assert value(samples, "node_memory_Inactive_file_bytes") == 200 * 1024
    assert value(samples, "node_memory_SwapTotal_bytes") == 0.0
    assert value(samples, "node_memory_HugePages_Total") == 4.0  # a count: no _bytes suffix
    assert value(samples, "node_memory_Hugepagesize_bytes") == 2048 * 1024

    assert value(samples, "node_network_receive_bytes_total", device="eth0") == 1000
    assert value(samples, "node_network_receive_multicast_total", device="eth0") == 6
    assert value(samples, "node_network_transmit_bytes_total", device="eth0") == 2000
    assert value(samples, "node_network_transmit_colls_total", device="eth0") == 10
    assert value(samples, "node_network_transmit_carrier_total", device="eth0") == 11
    assert value(samples, "node_network_transmit_compressed_total", device="eth0") == 12
    assert value(samples, "node_network_receive_packets_total", device="lo") == 29

    assert value(samples, "node_disk_reads_completed_total", device="sda") == 100
    assert value(samples, "node_disk_read_bytes_total", device="sda") == 4000 * 512
    assert value(samples, "node_disk_read_time_seconds_total", device="sda") == 1.5
    assert value(samples, "node_disk_written_bytes_total", device="sda") == 8000 * 512
    assert value(samples, "node_disk_io_now", device="sda") == 1
    assert value(samples, "node_disk_io_time_weighted_seconds_total", device="sda") == 4.0
    assert value(samples, "node_disk_discarded_sectors_total", device="sda") == 48
    assert value(samples, "node_disk_flush_requests_time_seconds_total", device="sda") == 0.25
    assert value(samples, "node_disk_reads_completed_total", device="nvme0n1") == 10
    assert value(samples, "node_disk_reads_completed_total", device="dm-0") == 5
    # Pre-4.18 row: no discard fields, no invented zeros.
    assert ("node_disk_discards_completed_total", (("device", "nvme0n1"),)) not in by_key(samples)
    disks = {s.labels["device"] for s in samples if s.name.startswith("node_disk_")}
    assert disks == {"sda", "nvme0n1", "dm-0"}  # partitions and loop devices excluded

    assert value(samples, "node_cpu_seconds_total", cpu="0", mode="user") == 100 / USER_HZ
    assert value(samples, "node_cpu_seconds_total", cpu="0", mode="idle") == 2500 / USER_HZ
    assert value(samples, "node_cpu_seconds_total", cpu="1", mode="steal") == 3 / USER_HZ
    assert value(samples, "node_cpu_guest_seconds_total", cpu="0", mode="user") == 7 / USER_HZ
    assert {s.labels["cpu"] for s in samples if s.name == "node_cpu_seconds_total"} == {"0", "1"}
    assert value(samples, "node_intr_total") == 123456
    assert value(samples, "node_context_switches_total") == 987654
    assert value(samples, "node_boot_time_seconds") == 1700000000
    assert value(samples, "node_forks_total") == 4321
    assert value(samples, "node_procs_running") == 3
    assert value(samples, "node_procs_blocked") == 1

    assert value(samples, "node_pressure_cpu_waiting_seconds_total") == 2.5
    assert value(samples, "node_pressure_io_stalled_seconds_total") == 0.5
    assert value(samples, "node_pressure_memory_stalled_seconds_total") == 1.0
    assert value(samples, "node_netstat_Tcp_ActiveOpens") == 17
    assert value(samples, "node_netstat_Tcp_CurrEstab") == 5
    assert value(samples, "node_netstat_Udp_InDatagrams") == 33
    assert value(samples, "node_netstat_Ip_Forwarding") == 1
    assert not [s for s in samples if s.name == "node_netstat_Ip_DefaultTTL"]  # not a default field
    assert value(samples, "node_sockstat_TCP_tw") == 2
    assert value(samples, "node_sockstat_TCP_mem_bytes") == 41 * os.sysconf("SC_PAGE_SIZE")
    assert value(samples, "node_sockstat_sockets_used") == 11
    assert value(samples, "node_filefd_allocated") == 376
    assert value(samples, "node_filefd_maximum") == 2466183
    assert value(samples, "node_vmstat_pgmajfault") == 739
    assert value(samples, "node_vmstat_oom_kill") == 2
    assert not [s for s in samples if s.name == "node_vmstat_nr_free_pages"]

    types = {s.name: s.type for s in samples}
    assert types["node_disk_io_now"] == "gauge"
    assert types["node_memory_MemTotal_bytes"] == "gauge"
    assert types["node_netstat_Tcp_CurrEstab"] == "gauge"
    assert types["node_netstat_Tcp_ActiveOpens"] == "counter"


def test_missing_files_are_skipped_and_reported(proc_root, tmp_path, caplog):
    (proc_root / "meminfo").unlink()
    caplog.set_level(logging.DEBUG, logger="collectors.host")
    samples = list(fixture_collector(proc_root, tmp_path).collect())
    names = {s.name for s in samples}
    assert not any(n.startswith("node_memory_") for n in names)
    assert "node_load1" not in names  # no loadavg in the fixture tree
    assert not any(n.startswith("node_network_up") for n in names)  # no sys_root at all
    assert "node_context_switches_total" in names  # the rest is still there
    assert value(samples, "node_scrape_collector_success", collector="meminfo") == 0.0
    assert value(samples, "node_scrape_collector_success", collector="loadavg") == 0.0
    assert value(samples, "node_scrape_collector_success", collector="diskstats") == 1.0
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING]


def test_malformed_file_is_logged_once_and_isolated(proc_root, tmp_path, caplog):
    (proc_root / "loadavg").write_text("garbage\n")
    collector = fixture_collector(proc_root, tmp_path)
    with caplog.at_level(logging.WARNING, logger="collectors.host"):
        first = list(collector.collect())
        list(collector.collect())
    warnings = [r for r in caplog.records if "loadavg" in r.getMessage()]
    assert len(warnings) == 1
    assert value(first, "node_scrape_collector_success", collector="loadavg") == 0.0
    assert value(first, "node_memory_MemTotal_bytes") == 16384 * 1024


def test_filesystems_follow_rootfs_filters_escapes_and_skip_failures(proc_root, tmp_path):
    rootfs = tmp_path / "rootfs"
    (rootfs / "data dir").mkdir(parents=True)
    (rootfs / "run").mkdir()
    (proc_root / "1/mounts").write_text(
        "/dev/sdz1 / ext4 rw,relatime 0 0\n"
        "proc /proc proc rw 0 0\n"
        "tmpfs /run tmpfs rw,nosuid 0 0\n"
        "overlay /var/lib/docker/overlay2/x/merged overlay rw 0 0\n"
        "/dev/sdz2 /data\\040dir xfs ro,noatime 0 0\n"
        "/dev/sdz2 /data\\040dir xfs ro,noatime 0 0\n"
        "/dev/gone /missing ext4 rw 0 0\n"
    )
    samples = list(fixture_collector(proc_root, tmp_path).collect())
    sizes = {s.labels["mountpoint"]: s for s in samples if s.name == "node_filesystem_size_bytes"}
    assert set(sizes) == {"/", "/run", "/data dir"}
    st = os.statvfs(rootfs / "data dir")
    assert sizes["/data dir"].labels == {"device": "/dev/sdz2", "fstype": "xfs", "mountpoint": "/data dir"}
    assert sizes["/data dir"].value == st.f_blocks * st.f_frsize
    assert value(samples, "node_filesystem_files", mountpoint="/data dir") == st.f_files
    assert value(samples, "node_filesystem_readonly", mountpoint="/data dir") == 1.0
    assert value(samples, "node_filesystem_readonly", mountpoint="/") == 0.0
    # statvfs fails for /missing: reported as a device error, nothing else, no exception.
    assert value(samples, "node_filesystem_device_error", mountpoint="/missing") == 1.0
    assert value(samples, "node_filesystem_device_error", mountpoint="/") == 0.0
    assert not [s for s in samples if s.name == "node_filesystem_size_bytes" and s.labels["mountpoint"] == "/missing"]


def test_hung_statvfs_times_out_and_is_not_retried_while_pending(proc_root, tmp_path, monkeypatch):
    (tmp_path / "rootfs" / "nfs").mkdir(parents=True)
    (proc_root / "1/mounts").write_text("srv:/export /nfs nfs4 rw 0 0\n")
    release = threading.Event()
    calls = []
    real_statvfs = os.statvfs

    def hanging_statvfs(path):
        calls.append(path)
        release.wait(10)  # a dead NFS server
        return real_statvfs(path)

    monkeypatch.setattr(os, "statvfs", hanging_statvfs)
    collector = fixture_collector(proc_root, tmp_path, mount_timeout=0.1)
    first = list(collector.collect())
    second = list(collector.collect())
    assert value(first, "node_filesystem_device_error", mountpoint="/nfs") == 1.0
    assert value(second, "node_filesystem_device_error", mountpoint="/nfs") == 1.0
    assert len(calls) == 1  # the stuck call was not stacked up again
    release.set()
    for _ in range(100):
        if not collector._stuck_mounts:
            break
        threading.Event().wait(0.01)
    third = list(collector.collect())
    assert value(third, "node_filesystem_device_error", mountpoint="/nfs") == 0.0


def test_cpu_counters_stay_monotonic_and_reset_on_hotplug(proc_root, tmp_path):
    collector = fixture_collector(proc_root, tmp_path)

    def idle(samples):
        return value(samples, "node_cpu_seconds_total", cpu="0", mode="idle")

    assert idle(collector.collect()) == 2500 / USER_HZ
    # A small step back (kernel accounting noise) keeps the previous value.
    (proc_root / "stat").write_text(STAT.replace("cpu0 100 10 50 2500", "cpu0 100 10 50 2499"))
    assert idle(collector.collect()) == 2500 / USER_HZ
    # A big one (CPU unplugged and replugged) starts over.
    unplugged = [ln for ln in STAT.splitlines(keepends=True) if not ln.startswith("cpu1 ")]
    (proc_root / "stat").write_text("".join(unplugged).replace("cpu0 100 10 50 2500", "cpu0 1 1 1 10"))
    samples = list(collector.collect())
    assert idle(samples) == 10 / USER_HZ
    assert {s.labels["cpu"] for s in samples if s.name == "node_cpu_seconds_total"} == {"0"}


def test_sysfs_network_class_and_cpufreq(proc_root, tmp_path):
    sys_root = write_tree(tmp_path / "sys", {
        "class/net/eth0/operstate": "up\n",
        "class/net/eth0/mtu": "1500\n",
        "class/net/eth0/flags": "0x1003\n",
        "class/net/eth0/speed": "1000\n",
        "class/net/eth0/address": "02:00:00:00:00:01\n",
        "class/net/eth0/carrier_changes": "4\n",
        "class/net/dummy0/operstate": "down\n",
        "class/net/dummy0/speed": "-1\n",
        "class/net/bonding_masters": "\n",
        "devices/system/cpu/cpu0/cpufreq/scaling_cur_freq": "2400000\n",
    })
    collector = HostCollector(proc_root=str(proc_root), sys_root=str(sys_root), rootfs=str(tmp_path))
    samples = list(collector.collect())
    assert value(samples, "node_network_up", device="eth0") == 1.0
    assert value(samples, "node_network_up", device="dummy0") == 0.0
    assert value(samples, "node_network_mtu_bytes", device="eth0") == 1500
    assert value(samples, "node_network_flags", device="eth0") == 0x1003
    assert value(samples, "node_network_speed_bytes", device="eth0") == 125_000_000
    assert value(samples, "node_network_carrier_changes_total", device="eth0") == 4
    assert not [s for s in samples if s.name == "node_network_speed_bytes" and s.labels["device"] == "dummy0"]
    info = [s for s in samples if s.name == "node_network_info" and s.labels["device"] == "eth0"][0]
    assert info.labels["address"] == "02:00:00:00:00:01" and info.labels["adminstate"] == "up"
    assert value(samples, "node_cpu_scaling_frequency_hertz", cpu="0") == 2.4e9



CONTAINER_NET_DEV = NET_DEV + """\
vethab12cd: 500 5 0 0 0 0 0 0 600 6 0 0 0 0 0 0
docker0: 700 7 0 0 0 0 0 0 800 8 0 0 0 0 0 0
br-0a1b2c3d4e5f: 900 9 0 0 0 0 0 0 100 1 0 0 0 0 0 0
"""


def test_container_interfaces_are_left_out_by_default_and_the_excludes_are_options(proc_root, tmp_path):
    (proc_root / "net/dev").write_text(CONTAINER_NET_DEV)
    sys_root = write_tree(tmp_path / "sys", {f"class/net/{d}/operstate": "up\n"
                                             for d in ("eth0", "lo", "vethab12cd", "docker0", "br-0a1b2c3d4e5f")})

    def devices(**options: str) -> tuple[set[str], set[str]]:
        samples = list(HostCollector(proc_root=str(proc_root), sys_root=str(sys_root), rootfs=str(tmp_path),
                                     **options).collect())
        return ({s.labels["device"] for s in samples if s.name == "node_network_receive_bytes_total"},
                {s.labels["device"] for s in samples if s.name == "node_network_up"})

    assert devices() == ({"lo", "eth0"}, {"lo", "eth0"})
    everything = {"lo", "eth0", "vethab12cd", "docker0", "br-0a1b2c3d4e5f"}
    assert devices(netdev_device_exclude="", netclass_ignored_devices="") == (everything, everything)
    netdev, netclass = devices(netdev_device_exclude="^(lo|veth.*)$")
    assert netdev == {"eth0", "docker0", "br-0a1b2c3d4e5f"} and netclass == {"lo", "eth0"}
    with pytest.raises(ValueError, match="netclass_ignored_devices"):
        HostCollector(proc_root=str(proc_root), sys_root=str(sys_root), netclass_ignored_devices="(")

# -- parsers and the registry --------------------------------------------------


def test_parsers_on_kernel_text():
    assert procfs.parse_snmp6("Ip6InReceives  12\nUdp6InDatagrams 3\nnope\n") == {
        "Ip6": {"InReceives": 12.0}, "Udp6": {"InDatagrams": 3.0}}
    rows = procfs.parse_softnet("0000000b 00000001 00000002 0 0 0 0 0 00000003 0 0 00000004 00000001\n")
    assert rows == [("1", [11, 1, 2, 0, 0, 0, 0, 0, 3, 0, 0, 4, 1])]
    assert procfs.parse_mounts("a\\011b /x\\134y ext4 rw,ro 0 0\n") == [("a\tb", "/x\\y", "ext4", ["rw", "ro"])]
    assert procfs.parse_snmp_tables("Tcp: A B\nTcp: 1 2 3\n") == {}  # mismatched pair skipped
    assert procfs.parse_loadavg("0.42 0.40 0.38 1/123 4567\n") == (0.42, 0.40, 0.38)



def test_an_empty_exclude_pattern_excludes_nothing_as_in_node_exporter(proc_root, tmp_path):
    for mount in ("run", "proc"):
        (tmp_path / "rootfs" / mount).mkdir(parents=True)
    (proc_root / "1/mounts").write_text("/dev/sdz1 / ext4 rw 0 0\nproc /proc proc rw 0 0\n"
                                        "tmpfs /run tmpfs rw 0 0\n")

    def seen(**options):
        samples = list(fixture_collector(proc_root, tmp_path, **options).collect())
        return ({s.labels["mountpoint"] for s in samples if s.name == "node_filesystem_size_bytes"},
                {s.labels["device"] for s in samples if s.name == "node_disk_reads_completed_total"})

    mounts, disks = seen()
    assert mounts == {"/", "/run"}  # /proc: its type and its mount point are excluded by default
    assert "sda" in disks and "sda1" not in disks
    all_mounts, all_disks = seen(fs_types_exclude="", mount_points_exclude="", disk_devices_exclude="")
    assert all_mounts == {"/", "/run", "/proc"}
    assert disks < all_disks and "sda1" in all_disks
    with pytest.raises(ValueError, match="mount_timeout must be a number of seconds above 0, at most 3600"):
        fixture_collector(proc_root, tmp_path, mount_timeout=float("inf"))
    with pytest.raises(ValueError, match="disk_devices_exclude must be a regular expression"):
        fixture_collector(proc_root, tmp_path, disk_devices_exclude=None)

def test_build_collectors_maps_names_and_rejects_bad_input(tmp_path):
    built = build_collectors(["host"], {"host": {"proc_root": "/proc"}})
    assert [type(c) for c in built] == [HostCollector] and isinstance(built[0], Collector)
    assert "host" in available_collectors()
    with pytest.raises(ValueError, match="unknown collector 'gpu'.*available: host"):
        build_collectors(["host", "gpu"], {})
    with pytest.raises(ValueError, match="invalid options for collector 'host'"):
        build_collectors(["host"], {"host": {"proc_path": "/proc"}})
    with pytest.raises(ValueError, match="not enabled"):
        build_collectors(["host"], {"docker": {}})
    with pytest.raises(ValueError, match="proc_root"):
        build_collectors(["host"], {"host": {"proc_root": str(tmp_path / "absent")}})
    with pytest.raises(ValueError, match="fs_types_exclude"):
        HostCollector(fs_types_exclude="(")


def test_sample_validates_type_and_normalises_value():
    assert Sample("x", {}, 3, "gauge").value == 3.0
    with pytest.raises(ValueError, match="type"):
        Sample("x", {}, 1.0, "histogram")
