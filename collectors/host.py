"""Host metrics with node_exporter's names, labels and units.

On Linux every value is read from ``proc_root`` and ``sys_root`` (injectable:
an agent in a container reads the host's through ``/host/proc`` and
``/host/sys``; tests point them at fixture trees). Names, labels, unit
conversions and default filters follow prometheus/node_exporter's Linux
collectors (cpu, loadavg, meminfo, filesystem, diskstats, netdev, netclass,
stat, filefd, entropy, vmstat, netstat, sockstat, softnet, pressure, conntrack,
arp, time, uname, cpufreq), so existing queries and dashboards carry over.

Each of those sections is read independently: a missing file (containers
lack some of /proc and most of /sys) or an unreadable one makes that section
report nothing for the cycle, logged at debug level; a malformed one is logged
as a warning once per section. The outcome per section is reported as
``node_scrape_collector_success{collector}`` (1 or 0) and
``node_scrape_collector_duration_seconds{collector}``, as node_exporter does.

On other platforms (macOS, BSD) a smaller portable set is collected through
psutil; see :mod:`collectors.host_portable`.
"""

from __future__ import annotations

import logging
import os
import queue
import re
import sys
import threading
import time
from collections.abc import Callable, Iterable
from typing import Any

from collectors import procfs
from collectors.base import Collector, Sample

log = logging.getLogger(__name__)

# node_exporter defaults (collector/filesystem_linux.go, diskstats_linux.go,
# netstat_linux.go, vmstat_linux.go).
DEFAULT_FS_TYPES_EXCLUDE = (
    r"^(autofs|binfmt_misc|bpf|cgroup2?|configfs|debugfs|devpts|devtmpfs|fusectl|hugetlbfs|iso9660"
    r"|mqueue|nsfs|overlay|proc|procfs|pstore|rpc_pipefs|securityfs|selinuxfs|squashfs|sysfs|tracefs)$"
)
DEFAULT_MOUNT_POINTS_EXCLUDE = (
    r"^/(dev|proc|run/credentials/.+|sys|var/lib/docker/.+|var/lib/containers/storage/.+)($|/)"
)
DEFAULT_DISK_DEVICES_EXCLUDE = r"^(z?ram|loop|fd|(h|s|v|xv)d[a-z]|nvme\d+n\d+p)\d+$"
# node_exporter keeps every interface by default; on a container host each short-lived
# container leaves a veth pair (and a bridge per network) whose ~35 series outlive it, so
# the agent leaves those out unless the option says otherwise ("" keeps everything).
DEFAULT_NETWORK_DEVICES_EXCLUDE = r"^(veth.*|docker.*|br-.*)$"
NETSTAT_FIELDS = re.compile(
    r"^(.*_(InErrors|InErrs)|Ip_Forwarding|Ip(6|Ext)_(InOctets|OutOctets)|Icmp6?_(InMsgs|OutMsgs)"
    r"|TcpExt_(Listen.*|Syncookies.*|TCPSynRetrans|TCPTimeouts|TCPOFOQueue)"
    r"|Tcp_(ActiveOpens|InSegs|OutSegs|OutRsts|PassiveOpens|RetransSegs|CurrEstab)"
    r"|Udp6?_(InDatagrams|OutDatagrams|NoPorts|RcvbufErrors|SndbufErrors))$"
)
VMSTAT_FIELDS = re.compile(r"^(oom_kill|pgpg|pswp|pg.*fault).*")
# Netstat fields that are levels, not event counts.
NETSTAT_GAUGES = frozenset({"Tcp_CurrEstab", "Ip_Forwarding", "Tcp_MaxConn", "Tcp_RtoAlgorithm",
                            "Tcp_RtoMin", "Tcp_RtoMax", "Ip_DefaultTTL"})

CPU_MODES = ("user", "nice", "system", "idle", "iowait", "irq", "softirq", "steal")
# A CPU whose idle time goes back this far was hot-plugged: restart its cache.
CPU_JUMP_BACK_SECONDS = 3.0
SECTOR_BYTES = 512

# (metric suffix, field index in a /proc/diskstats row, scale, type)
_DISKSTATS = (
    ("reads_completed_total", 0, 1.0, "counter"),
    ("reads_merged_total", 1, 1.0, "counter"),
    ("read_bytes_total", 2, SECTOR_BYTES, "counter"),
    ("read_time_seconds_total", 3, 0.001, "counter"),
    ("writes_completed_total", 4, 1.0, "counter"),
    ("writes_merged_total", 5, 1.0, "counter"),
    ("written_bytes_total", 6, SECTOR_BYTES, "counter"),
    ("write_time_seconds_total", 7, 0.001, "counter"),
    ("io_now", 8, 1.0, "gauge"),
    ("io_time_seconds_total", 9, 0.001, "counter"),
    ("io_time_weighted_seconds_total", 10, 0.001, "counter"),
    ("discards_completed_total", 11, 1.0, "counter"),
    ("discards_merged_total", 12, 1.0, "counter"),
    ("discarded_sectors_total", 13, 1.0, "counter"),
    ("discard_time_seconds_total", 14, 0.001, "counter"),
    ("flush_requests_total", 15, 1.0, "counter"),
    ("flush_requests_time_seconds_total", 16, 0.001, "counter"),
)

# (sysfs attribute of /sys/class/net/<dev>, metric suffix, type)
_NETCLASS = (
    ("addr_assign_type", "address_assign_type", "gauge"),
    ("carrier", "carrier", "gauge"),
    ("carrier_changes", "carrier_changes_total", "counter"),
    ("carrier_up_count", "carrier_up_changes_total", "counter"),
    ("carrier_down_count", "carrier_down_changes_total", "counter"),
    ("dev_id", "device_id", "gauge"),
    ("dormant", "dormant", "gauge"),
    ("flags", "flags", "gauge"),
    ("ifindex", "iface_id", "gauge"),
    ("iflink", "iface_link", "gauge"),
    ("link_mode", "iface_link_mode", "gauge"),
    ("mtu", "mtu_bytes", "gauge"),
    ("name_assign_type", "name_assign_type", "gauge"),
    ("netdev_group", "net_dev_group", "gauge"),
    ("tx_queue_len", "transmit_queue_length", "gauge"),
    ("type", "protocol_type", "gauge"),
)

# (file in /sys/devices/system/cpu/cpuN/cpufreq, metric name); values in kHz.
_CPUFREQ = (
    ("cpuinfo_cur_freq", "node_cpu_frequency_hertz"),
    ("cpuinfo_max_freq", "node_cpu_frequency_max_hertz"),
    ("cpuinfo_min_freq", "node_cpu_frequency_min_hertz"),
    ("scaling_cur_freq", "node_cpu_scaling_frequency_hertz"),
    ("scaling_max_freq", "node_cpu_scaling_frequency_max_hertz"),
    ("scaling_min_freq", "node_cpu_scaling_frequency_min_hertz"),
)

# (resource, line, metric) for /proc/pressure; totals are microseconds.
_PRESSURE = (
    ("cpu", "some", "node_pressure_cpu_waiting_seconds_total"),
    ("io", "some", "node_pressure_io_waiting_seconds_total"),
    ("io", "full", "node_pressure_io_stalled_seconds_total"),
    ("memory", "some", "node_pressure_memory_waiting_seconds_total"),
    ("memory", "full", "node_pressure_memory_stalled_seconds_total"),
)


def gauge(name: str, value: float, labels: dict[str, str] | None = None) -> Sample:
    return Sample(name, labels or {}, float(value), "gauge")


def _read_all(path: str) -> str:
    """The whole file at ``path``, decoded as UTF-8 (bad bytes replaced). Raises OSError."""
    fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    try:
        data = os.read(fd, 65536)
        if data:  # procfs may answer in pieces: read to the end
            while chunk := os.read(fd, 65536):
                data += chunk
    finally:
        os.close(fd)
    return data.decode("utf-8", "replace")


def counter(name: str, value: float, labels: dict[str, str] | None = None) -> Sample:
    return Sample(name, labels or {}, float(value), "counter")


def _sysfs_int(raw: str | None) -> int | None:
    """A sysfs number (decimal, or hex with 0x like ``flags``); None if absent or not a number."""
    if not raw:
        return None
    try:
        return int(raw, 16) if raw.startswith("0x") else int(raw)
    except ValueError:
        return None


PATH_OPTIONS = ("proc_root", "sys_root", "rootfs")
PATTERN_OPTIONS = ("fs_types_exclude", "mount_points_exclude", "disk_devices_exclude", "netdev_device_exclude",
                   "netclass_ignored_devices")
OPTIONS = (*PATH_OPTIONS, *PATTERN_OPTIONS, "mount_timeout")  # collector_options.host (docs/agent.md)
MAX_MOUNT_TIMEOUT = 3600.0  # seconds: past this a hung statvfs() is as good as forever


def option_problem(option: str, value: Any) -> str | None:
    """What is wrong with ``value`` for the host input's option ``option`` (a key of
    ``collector_options.host``), as a phrase to follow the key's name; None when nothing.
    An exclude pattern is a Python regular expression searched in the name, ``""``
    excluding nothing (node_exporter's empty ``--collector.*.exclude`` flags)."""
    if option in PATH_OPTIONS:
        return None if isinstance(value, str) and value else "must be a path (a non-empty string)"
    if option in PATTERN_OPTIONS:
        if not isinstance(value, str):
            return 'must be a regular expression (a string; "" excludes nothing)'
        try:
            re.compile(value)
        except re.error as exc:
            return f"is not a valid regular expression: {exc}"
        return None
    if option == "mount_timeout":
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 < value <= MAX_MOUNT_TIMEOUT:
            return f"must be a number of seconds above 0, at most {MAX_MOUNT_TIMEOUT:g}"  # NaN and inf fail too
        return None
    return f"is not an option of the host input; its options: {', '.join(OPTIONS)}"


def _compile(option: str, pattern: str) -> re.Pattern[str]:
    """``pattern`` compiled; ``""`` as a pattern that matches nothing."""
    problem = option_problem(option, pattern)
    if problem:
        raise ValueError(f"host collector: {option} {problem}")
    return re.compile(pattern or "(?!)")


class HostCollector(Collector):
    """Host metrics in node_exporter's vocabulary.

    Options:
    - ``proc_root``, ``sys_root``: where procfs and sysfs are mounted.
    - ``rootfs``: where the host's root filesystem is visible; mount points
      are stat'ed under it and reported without it.
    - ``fs_types_exclude``, ``mount_points_exclude``, ``disk_devices_exclude``:
      regular expressions, node_exporter's defaults; ``""`` excludes nothing.
    - ``netdev_device_exclude``, ``netclass_ignored_devices``: regular expressions of
      network interfaces left out of ``node_network_*`` (node_exporter's
      ``--collector.netdev.device-exclude`` and ``--collector.netclass.ignored-devices``);
      both default to :data:`DEFAULT_NETWORK_DEVICES_EXCLUDE` (container veth pairs and
      bridges); ``""`` keeps every interface. Add ``|lo`` to leave out loopback.
    - ``mount_timeout``: seconds to wait for one ``statvfs()``; a mount that
      does not answer (a dead NFS server) is reported with
      ``node_filesystem_device_error 1`` and not retried until its pending
      call returns.

    Raises ``ValueError`` on Linux when ``proc_root`` is not a directory and for an
    option :func:`option_problem` refuses (an invalid regular expression, a
    ``mount_timeout`` not in (0, :data:`MAX_MOUNT_TIMEOUT`] seconds).
    """

    name = "host"

    def __init__(
        self,
        proc_root: str = "/proc",
        sys_root: str = "/sys",
        rootfs: str = "/",
        fs_types_exclude: str = DEFAULT_FS_TYPES_EXCLUDE,
        mount_points_exclude: str = DEFAULT_MOUNT_POINTS_EXCLUDE,
        disk_devices_exclude: str = DEFAULT_DISK_DEVICES_EXCLUDE,
        netdev_device_exclude: str = DEFAULT_NETWORK_DEVICES_EXCLUDE,
        netclass_ignored_devices: str = DEFAULT_NETWORK_DEVICES_EXCLUDE,
        mount_timeout: float = 5.0,
    ) -> None:
        self.proc_root = proc_root
        self.sys_root = sys_root
        self.rootfs = rootfs
        self.portable = not sys.platform.startswith("linux")
        if not self.portable and not os.path.isdir(proc_root):
            raise ValueError(f"host collector: proc_root {proc_root!r} is not a directory")
        problem = option_problem("mount_timeout", mount_timeout)
        if problem:
            raise ValueError(f"host collector: mount_timeout {problem}, got {mount_timeout!r}")
        self.mount_timeout = float(mount_timeout)
        self._fs_types_exclude = _compile("fs_types_exclude", fs_types_exclude)
        self._mount_points_exclude = _compile("mount_points_exclude", mount_points_exclude)
        self._disk_devices_exclude = _compile("disk_devices_exclude", disk_devices_exclude)
        self._netdev_exclude = _compile("netdev_device_exclude", netdev_device_exclude)
        self._netclass_ignored = _compile("netclass_ignored_devices", netclass_ignored_devices)
        self._clock_ticks = float(os.sysconf("SC_CLK_TCK")) if hasattr(os, "sysconf") else 100.0
        self._page_size = os.sysconf("SC_PAGE_SIZE") if hasattr(os, "sysconf") else 4096
        self._cpu_cache: dict[str, list[float]] = {}
        self._stuck_mounts: set[str] = set()
        self._stuck_lock = threading.Lock()
        self._statvfs_inbox: queue.SimpleQueue | None = None  # requests to the statvfs worker
        self._warned_sections: set[str] = set()
        self._sections: tuple[tuple[str, Callable[[], list[Sample]]], ...] = (
            ("cpu", self._cpu),
            ("cpufreq", self._cpufreq),
            ("loadavg", self._loadavg),
            ("meminfo", self._meminfo),
            ("filesystem", self._filesystem),
            ("diskstats", self._diskstats),
            ("netdev", self._netdev),
            ("netclass", self._netclass),
            ("stat", self._stat),
            ("filefd", self._filefd),
            ("entropy", self._entropy),
            ("vmstat", self._vmstat),
            ("netstat", self._netstat),
            ("sockstat", self._sockstat),
            ("softnet", self._softnet),
            ("pressure", self._pressure),
            ("conntrack", self._conntrack),
            ("arp", self._arp),
            ("time", self._time),
            ("uname", self._uname),
        )

    # -- protocol ---------------------------------------------------------

    def collect(self) -> Iterable[Sample]:
        """Samples of every section that could be read this cycle."""
        if self.portable:
            from collectors.host_portable import portable_samples

            return portable_samples(self._fs_types_exclude, self._mount_points_exclude, self._disk_devices_exclude,
                                    self._netdev_exclude)
        out: list[Sample] = []
        for section, read in self._sections:
            started = time.perf_counter()
            try:
                samples = read()
            except OSError as exc:
                # Absent or unreadable sources are normal in containers.
                log.debug("host collector: %s: no data: %s", section, exc)
                success = 0.0
            except (ValueError, IndexError) as exc:
                self._warn_once(section, exc)
                success = 0.0
            else:
                out.extend(samples)
                success = 1.0
            labels = {"collector": section}
            out.append(gauge("node_scrape_collector_duration_seconds", time.perf_counter() - started, labels))
            out.append(gauge("node_scrape_collector_success", success, labels))
        return out

    def _warn_once(self, section: str, exc: Exception) -> None:
        if section in self._warned_sections:
            log.debug("host collector: %s: cannot parse: %s", section, exc)
        else:
            self._warned_sections.add(section)
            log.warning("host collector: %s: cannot parse (further failures logged at debug): %s", section, exc)

    # -- file access --------------------------------------------------------

    # Binary reads decoded once: a text wrapper per file costs more than the read itself
    # (hundreds of small sysfs files per cycle; see BENCHMARKS.md, agent footprint).
    # os.open/os.read rather than open(): no file object per read, ~4 µs less per file.
    def _proc(self, rel: str) -> str:
        return _read_all(os.path.join(self.proc_root, rel))

    def _sys(self, rel: str) -> str:
        return _read_all(self.sys_root + "/" + rel)

    def _sys_optional(self, rel: str) -> str | None:
        """A sysfs attribute, or None when absent or refused (EINVAL on a down link)."""
        try:
            return self._sys(rel).strip()
        except OSError:
            return None

    # -- sections -----------------------------------------------------------

    def _cpu(self) -> list[Sample]:
        stat = procfs.parse_stat(self._proc("stat"))
        fresh = {cpu: [t / self._clock_ticks for t in ticks] for cpu, ticks in stat["cpus"].items()}
        self._update_cpu_cache(fresh)
        out = []
        for cpu, seconds in sorted(self._cpu_cache.items(), key=lambda kv: int(kv[0])):
            for i, mode in enumerate(CPU_MODES):
                out.append(counter("node_cpu_seconds_total", seconds[i], {"cpu": cpu, "mode": mode}))
            out.append(counter("node_cpu_guest_seconds_total", seconds[8], {"cpu": cpu, "mode": "user"}))
            out.append(counter("node_cpu_guest_seconds_total", seconds[9], {"cpu": cpu, "mode": "nice"}))
        return out

    def _update_cpu_cache(self, fresh: dict[str, list[float]]) -> None:
        # The kernel's idle/iowait accounting can step backwards a little
        # (NO_HZ, iowait on migrating tasks); keep each counter monotonic as
        # node_exporter does, but restart on a big jump back (CPU hotplug).
        for cpu, seconds in fresh.items():
            cached = self._cpu_cache.get(cpu)
            if cached is None or cached[3] - seconds[3] >= CPU_JUMP_BACK_SECONDS:
                self._cpu_cache[cpu] = list(seconds)
                continue
            self._cpu_cache[cpu] = [max(old, new) for old, new in zip(cached, seconds)]
        for cpu in set(self._cpu_cache) - set(fresh):
            del self._cpu_cache[cpu]  # offline CPU: stop reporting it

    def _cpufreq(self) -> list[Sample]:
        base = os.path.join(self.sys_root, "devices/system/cpu")
        out = []
        for entry in sorted(os.listdir(base)):
            if not re.fullmatch(r"cpu\d+", entry):
                continue
            for filename, metric in _CPUFREQ:
                raw = self._sys_optional(f"devices/system/cpu/{entry}/cpufreq/{filename}")
                if raw and raw.isdigit():
                    out.append(gauge(metric, int(raw) * 1000.0, {"cpu": entry[3:]}))
        return out

    def _loadavg(self) -> list[Sample]:
        one, five, fifteen = procfs.parse_loadavg(self._proc("loadavg"))
        return [gauge("node_load1", one), gauge("node_load5", five), gauge("node_load15", fifteen)]

    def _meminfo(self) -> list[Sample]:
        meminfo = procfs.parse_meminfo(self._proc("meminfo"))
        return [gauge(f"node_memory_{key}", value) for key, value in meminfo.items()]

    def _mounts(self) -> list[tuple[str, str, str, list[str]]]:
        # PID 1's mount table is the host's when proc_root is the host's /proc.
        try:
            return procfs.parse_mounts(self._proc("1/mounts"))
        except OSError:
            return procfs.parse_mounts(self._proc("mounts"))

    def _filesystem(self) -> list[Sample]:
        out: list[Sample] = []
        seen: set[tuple[str, str, str]] = set()
        root = self.rootfs.rstrip("/")
        for device, mountpoint, fstype, options in self._mounts():
            if root and (mountpoint == root or mountpoint.startswith(root + "/")):
                mountpoint = mountpoint[len(root):] or "/"
            if self._mount_points_exclude.search(mountpoint) or self._fs_types_exclude.search(fstype):
                continue
            key = (device, fstype, mountpoint)
            if key in seen:
                continue
            seen.add(key)
            labels = {"device": device, "fstype": fstype, "mountpoint": mountpoint}
            st = self._statvfs(os.path.join(self.rootfs, mountpoint.lstrip("/")))
            out.append(gauge("node_filesystem_device_error", 0.0 if st else 1.0, labels))
            if st is None:
                continue
            out.extend(
                (
                    gauge("node_filesystem_size_bytes", st.f_blocks * st.f_frsize, labels),
                    gauge("node_filesystem_free_bytes", st.f_bfree * st.f_frsize, labels),
                    gauge("node_filesystem_avail_bytes", st.f_bavail * st.f_frsize, labels),
                    gauge("node_filesystem_files", st.f_files, labels),
                    gauge("node_filesystem_files_free", st.f_ffree, labels),
                    gauge("node_filesystem_readonly", 1.0 if "ro" in options else 0.0, labels),
                )
            )
        return out

    def _statvfs(self, path: str) -> os.statvfs_result | None:
        """``os.statvfs(path)`` bounded by ``mount_timeout``; None on error or timeout.

        The calls run on one long-lived worker thread (a thread per call cost ~0.3 ms of
        CPU each, every cycle). A hung network filesystem blocks statvfs() in the kernel:
        the worker stuck in it is abandoned (it exits once the call returns), the path is
        skipped until then, and the next call starts a fresh worker."""
        with self._stuck_lock:
            if path in self._stuck_mounts:
                log.debug("host collector: filesystem: %s still not answering, skipped", path)
                return None
        if self._statvfs_inbox is None:
            self._statvfs_inbox = queue.SimpleQueue()
            threading.Thread(target=self._statvfs_worker, args=(self._statvfs_inbox,),
                             name="statvfs", daemon=True).start()
        result: list[os.statvfs_result] = []
        done = threading.Lock()
        done.acquire()
        self._statvfs_inbox.put((path, result, done))
        if not done.acquire(timeout=self.mount_timeout):
            with self._stuck_lock:
                if not done.locked():  # answered just now
                    return result[0] if result else None
                self._stuck_mounts.add(path)
            self._statvfs_inbox.put(None)  # the stuck worker exits when statvfs returns
            self._statvfs_inbox = None
            log.warning("host collector: filesystem: statvfs(%s) timed out after %.1fs", path, self.mount_timeout)
            return None
        return result[0] if result else None

    def _statvfs_worker(self, inbox: queue.SimpleQueue) -> None:
        while (request := inbox.get()) is not None:
            path, result, done = request
            try:
                result.append(os.statvfs(path))
            except OSError as exc:
                log.debug("host collector: filesystem: statvfs(%s) failed: %s", path, exc)
            finally:
                with self._stuck_lock:
                    self._stuck_mounts.discard(path)
                    done.release()

    def _diskstats(self) -> list[Sample]:
        out = []
        for device, fields in procfs.parse_diskstats(self._proc("diskstats")).items():
            if self._disk_devices_exclude.search(device):
                continue
            labels = {"device": device}
            for suffix, index, scale, kind in _DISKSTATS:
                if index < len(fields):
                    out.append(Sample(f"node_disk_{suffix}", labels, fields[index] * scale, kind))
        return out

    def _netdev(self) -> list[Sample]:
        out: list[Sample] = []
        for device, fields in procfs.parse_net_dev(self._proc("net/dev")).items():
            if self._netdev_exclude.search(device):
                continue
            labels = {"device": device}
            out.extend(counter(f"node_network_{field}_total", value, labels) for field, value in fields.items())
        return out

    def _netclass(self) -> list[Sample]:
        base = os.path.join(self.sys_root, "class/net")
        out = []
        for device in sorted(os.listdir(base)):
            if not os.path.isdir(os.path.join(base, device)) or self._netclass_ignored.search(device):
                continue  # e.g. bonding_masters
            labels = {"device": device}

            def attr(name: str, device: str = device) -> str | None:
                return self._sys_optional(f"class/net/{device}/{name}")

            operstate = attr("operstate") or "unknown"
            flags = _sysfs_int(attr("flags"))
            adminstate = "unknown" if flags is None else ("up" if flags & 1 else "down")
            out.append(gauge("node_network_up", 1.0 if operstate == "up" else 0.0, labels))
            info = {
                "device": device,
                "address": attr("address") or "",
                "broadcast": attr("broadcast") or "",
                "duplex": attr("duplex") or "",
                "operstate": operstate,
                "adminstate": adminstate,
                "ifalias": attr("ifalias") or "",
            }
            out.append(gauge("node_network_info", 1.0, info))
            for filename, suffix, kind in _NETCLASS:
                value = _sysfs_int(attr(filename))
                if value is not None:
                    out.append(Sample(f"node_network_{suffix}", labels, float(value), kind))
            speed = _sysfs_int(attr("speed"))
            # -1 means unknown (virtual links); report nothing rather than a negative rate.
            if speed is not None and speed >= 0:
                out.append(gauge("node_network_speed_bytes", speed * 1000 * 1000 / 8, labels))
        return out

    def _stat(self) -> list[Sample]:
        stat = procfs.parse_stat(self._proc("stat"))
        out = []
        for key, name, kind in (
            ("intr", "node_intr_total", "counter"),
            ("ctxt", "node_context_switches_total", "counter"),
            ("processes", "node_forks_total", "counter"),
            ("btime", "node_boot_time_seconds", "gauge"),
            ("procs_running", "node_procs_running", "gauge"),
            ("procs_blocked", "node_procs_blocked", "gauge"),
        ):
            if key in stat:
                out.append(Sample(name, {}, float(stat[key]), kind))
        return out

    def _filefd(self) -> list[Sample]:
        allocated, _unused, maximum = self._proc("sys/fs/file-nr").split()[:3]
        return [gauge("node_filefd_allocated", float(allocated)), gauge("node_filefd_maximum", float(maximum))]

    def _entropy(self) -> list[Sample]:
        out = [gauge("node_entropy_available_bits", float(self._proc("sys/kernel/random/entropy_avail")))]
        try:
            out.append(gauge("node_entropy_pool_size_bits", float(self._proc("sys/kernel/random/poolsize"))))
        except OSError as exc:
            log.debug("host collector: entropy: no pool size: %s", exc)
        return out

    def _vmstat(self) -> list[Sample]:
        return [
            counter(f"node_vmstat_{key}", value)
            for key, value in procfs.parse_key_values(self._proc("vmstat")).items()
            if VMSTAT_FIELDS.match(key)
        ]

    def _netstat(self) -> list[Sample]:
        tables: dict[str, dict[str, float]] = {}
        found = False
        for rel, parse in (("net/netstat", procfs.parse_snmp_tables), ("net/snmp", procfs.parse_snmp_tables),
                           ("net/snmp6", procfs.parse_snmp6)):
            try:
                text = self._proc(rel)
            except OSError as exc:
                log.debug("host collector: netstat: %s: %s", rel, exc)
                continue
            found = True
            for proto, fields in parse(text).items():
                tables.setdefault(proto, {}).update(fields)
        if not found:
            raise FileNotFoundError(os.path.join(self.proc_root, "net/snmp"))
        out = []
        for proto, fields in tables.items():
            for field, value in fields.items():
                key = f"{proto}_{field}"
                if NETSTAT_FIELDS.match(key):
                    kind = "gauge" if key in NETSTAT_GAUGES else "counter"
                    out.append(Sample(f"node_netstat_{key}", {}, value, kind))
        return out

    def _sockstat(self) -> list[Sample]:
        tables = [procfs.parse_sockstat(self._proc("net/sockstat"))]
        try:
            tables.append(procfs.parse_sockstat(self._proc("net/sockstat6")))
        except OSError as exc:
            log.debug("host collector: sockstat: no IPv6 table: %s", exc)  # IPv6 disabled
        out = []
        for table in tables:
            for proto, fields in table.items():
                if proto == "sockets":
                    if "used" in fields:
                        out.append(gauge("node_sockstat_sockets_used", fields["used"]))
                    continue
                for field, value in fields.items():
                    out.append(gauge(f"node_sockstat_{proto}_{field}", value))
                if "mem" in fields:
                    out.append(gauge(f"node_sockstat_{proto}_mem_bytes", fields["mem"] * self._page_size))
        return out

    def _softnet(self) -> list[Sample]:
        out = []
        for cpu, cols in procfs.parse_softnet(self._proc("net/softnet_stat")):
            labels = {"cpu": cpu}
            for index, name in ((0, "processed_total"), (1, "dropped_total"), (2, "times_squeezed_total"),
                                (8, "cpu_collision_total"), (9, "received_rps_total"),
                                (10, "flow_limit_count_total")):
                if index < len(cols):
                    out.append(counter(f"node_softnet_{name}", cols[index], labels))
            if len(cols) > 11:
                out.append(gauge("node_softnet_backlog_len", cols[11], labels))
        return out

    def _pressure(self) -> list[Sample]:
        totals = {res: procfs.parse_pressure(self._proc(f"pressure/{res}")) for res in ("cpu", "io", "memory")}
        return [
            counter(metric, totals[res][line] / 1e6)
            for res, line, metric in _PRESSURE
            if line in totals[res]
        ]

    def _conntrack(self) -> list[Sample]:
        return [
            gauge("node_nf_conntrack_entries", float(self._proc("sys/net/netfilter/nf_conntrack_count"))),
            gauge("node_nf_conntrack_entries_limit", float(self._proc("sys/net/netfilter/nf_conntrack_max"))),
        ]

    def _arp(self) -> list[Sample]:
        counts: dict[str, int] = {}
        for line in self._proc("net/arp").splitlines()[1:]:
            parts = line.split()
            if len(parts) >= 6:
                counts[parts[5]] = counts.get(parts[5], 0) + 1
        return [gauge("node_arp_entries", n, {"device": dev}) for dev, n in sorted(counts.items())]

    def _time(self) -> list[Sample]:
        now = time.time()
        local = time.localtime(now)
        out = [
            gauge("node_time_seconds", now),
            gauge("node_time_zone_offset_seconds", float(local.tm_gmtoff), {"time_zone": local.tm_zone}),
        ]
        base = "devices/system/clocksource"
        try:
            sources = sorted(os.listdir(os.path.join(self.sys_root, base)))
        except OSError as exc:
            log.debug("host collector: time: no clocksources: %s", exc)
            return out
        for entry in sources:
            if not entry.startswith("clocksource"):
                continue
            device = entry[len("clocksource"):]
            for available in (self._sys_optional(f"{base}/{entry}/available_clocksource") or "").split():
                out.append(gauge("node_time_clocksource_available_info", 1.0,
                                 {"clocksource": available, "device": device}))
            current = self._sys_optional(f"{base}/{entry}/current_clocksource")
            if current:
                out.append(gauge("node_time_clocksource_current_info", 1.0, {"clocksource": current, "device": device}))
        return out

    def _uname(self) -> list[Sample]:
        def kernel(name: str) -> str:
            return self._proc(f"sys/kernel/{name}").strip()

        labels = {
            "sysname": kernel("ostype"),
            "release": kernel("osrelease"),
            "version": kernel("version"),
            "machine": os.uname().machine,  # same kernel as proc_root: not in /proc
            "nodename": kernel("hostname"),
            "domainname": kernel("domainname"),
        }
        return [gauge("node_uname_info", 1.0, labels)]
