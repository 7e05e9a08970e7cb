"""Portable host metrics through psutil, for hosts without Linux's /proc.

Used by :class:`collectors.host.HostCollector` on macOS and the BSDs (a
developer running ``fleetdeck run`` on a laptop). It reports the subset that
psutil exposes everywhere, under the same node_exporter names as on Linux so
the console's host summary works unchanged: CPU seconds per mode, load,
``node_memory_{MemTotal,MemAvailable,MemFree,SwapTotal,SwapFree}_bytes``,
filesystem sizes, per-disk and per-interface counters, boot time and time.
"""

from __future__ import annotations

import logging
import os
import re
import time

from collectors.base import Sample

log = logging.getLogger(__name__)

# (psutil cpu_times field, node_exporter mode); fields missing on a platform are skipped.
_CPU_FIELDS = (("user", "user"), ("nice", "nice"), ("system", "system"), ("idle", "idle"),
               ("iowait", "iowait"), ("irq", "irq"), ("softirq", "softirq"), ("steal", "steal"))
_DISK_FIELDS = (("read_count", "reads_completed_total", 1.0), ("read_merged_count", "reads_merged_total", 1.0),
                ("read_bytes", "read_bytes_total", 1.0), ("read_time", "read_time_seconds_total", 0.001),
                ("write_count", "writes_completed_total", 1.0), ("write_merged_count", "writes_merged_total", 1.0),
                ("write_bytes", "written_bytes_total", 1.0), ("write_time", "write_time_seconds_total", 0.001),
                ("busy_time", "io_time_seconds_total", 0.001))
_NET_FIELDS = (("bytes_recv", "receive_bytes"), ("packets_recv", "receive_packets"), ("errin", "receive_errs"),
               ("dropin", "receive_drop"), ("bytes_sent", "transmit_bytes"), ("packets_sent", "transmit_packets"),
               ("errout", "transmit_errs"), ("dropout", "transmit_drop"))


def portable_samples(
    fs_types_exclude: re.Pattern[str],
    mount_points_exclude: re.Pattern[str],
    disk_devices_exclude: re.Pattern[str],
    network_devices_exclude: re.Pattern[str],
) -> list[Sample]:
    """Current host samples via psutil (imported here: Linux agents never load it).

    The patterns filter filesystems, disks and network interfaces as on Linux.
    """
    import psutil

    out: list[Sample] = []
    for cpu, times in enumerate(psutil.cpu_times(percpu=True)):
        for field, mode in _CPU_FIELDS:
            if hasattr(times, field):
                out.append(Sample("node_cpu_seconds_total", {"cpu": str(cpu), "mode": mode},
                                  getattr(times, field), "counter"))

    for name, value in zip(("node_load1", "node_load5", "node_load15"), os.getloadavg()):
        out.append(Sample(name, {}, value, "gauge"))

    vm, swap = psutil.virtual_memory(), psutil.swap_memory()
    for name, value in (("MemTotal", vm.total), ("MemAvailable", vm.available), ("MemFree", vm.free),
                        ("SwapTotal", swap.total), ("SwapFree", swap.free)):
        out.append(Sample(f"node_memory_{name}_bytes", {}, value, "gauge"))

    seen: set[tuple[str, str, str]] = set()
    for part in psutil.disk_partitions(all=False):
        if fs_types_exclude.search(part.fstype) or mount_points_exclude.search(part.mountpoint):
            continue
        labels = {"device": part.device, "fstype": part.fstype, "mountpoint": part.mountpoint}
        if (part.device, part.fstype, part.mountpoint) in seen:
            continue
        seen.add((part.device, part.fstype, part.mountpoint))
        try:
            st = os.statvfs(part.mountpoint)
        except OSError as exc:
            log.debug("host collector: statvfs(%s) failed: %s", part.mountpoint, exc)
            out.append(Sample("node_filesystem_device_error", labels, 1.0, "gauge"))
            continue
        readonly = 1.0 if "ro" in part.opts.split(",") else 0.0
        out.extend(Sample(name, labels, value, "gauge") for name, value in (
            ("node_filesystem_device_error", 0.0),
            ("node_filesystem_size_bytes", st.f_blocks * st.f_frsize),
            ("node_filesystem_free_bytes", st.f_bfree * st.f_frsize),
            ("node_filesystem_avail_bytes", st.f_bavail * st.f_frsize),
            ("node_filesystem_files", st.f_files),
            ("node_filesystem_files_free", st.f_ffree),
            ("node_filesystem_readonly", readonly),
        ))

    for device, io in (psutil.disk_io_counters(perdisk=True) or {}).items():
        if disk_devices_exclude.search(device):
            continue
        for field, suffix, scale in _DISK_FIELDS:
            if hasattr(io, field):
                out.append(Sample(f"node_disk_{suffix}", {"device": device}, getattr(io, field) * scale, "counter"))

    for device, nic in (psutil.net_io_counters(pernic=True) or {}).items():
        if network_devices_exclude.search(device):
            continue
        for field, suffix in _NET_FIELDS:
            out.append(Sample(f"node_network_{suffix}_total", {"device": device}, getattr(nic, field), "counter"))

    out.append(Sample("node_boot_time_seconds", {}, psutil.boot_time(), "gauge"))
    out.append(Sample("node_time_seconds", {}, time.time(), "gauge"))
    return out
