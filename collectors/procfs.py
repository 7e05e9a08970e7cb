"""Parsers for Linux /proc text formats.

Pure functions: text in, plain Python structures out, no file access, so they
can be tested on strings and reused against any ``proc_root``. Malformed lines
that the kernel never writes are skipped; a file with no usable content
yields an empty structure. Unit conversion is left to the caller unless the
function says otherwise.

Format references (kernel tree):
- /proc/stat, /proc/loadavg, /proc/meminfo, /proc/vmstat: Documentation/filesystems/proc.rst
- /proc/diskstats: Documentation/admin-guide/iostats.rst
- /proc/net/dev, /proc/net/snmp, /proc/net/netstat, /proc/net/sockstat: net/core/net-procfs.c,
  net/ipv4/proc.c, net/ipv6/proc.c
- /proc/net/softnet_stat: net/core/net-procfs.c (softnet_seq_show)
- /proc/pressure/*: Documentation/accounting/psi.rst
- /proc/mounts: fstab(5) field layout, octal escapes from seq_escape()
"""

from __future__ import annotations

import re

_PARENS = re.compile(r"\((.*)\)")
_OCTAL_ESCAPE = re.compile(r"\\([0-7]{3})")

# Field order of the per-device counters in /proc/net/dev, after the "name:".
NET_DEV_RECEIVE = ("bytes", "packets", "errs", "drop", "fifo", "frame", "compressed", "multicast")
NET_DEV_TRANSMIT = ("bytes", "packets", "errs", "drop", "fifo", "colls", "carrier", "compressed")

# Field order of a "cpuN" line in /proc/stat (values in USER_HZ ticks).
CPU_STAT_FIELDS = ("user", "nice", "system", "idle", "iowait", "irq", "softirq", "steal", "guest", "guest_nice")


def parse_stat(text: str) -> dict:
    """Parse /proc/stat.

    Returns ``{"cpus": {"0": [ticks, ...], ...}, "intr": int, "ctxt": int,
    "btime": int, "processes": int, "procs_running": int, "procs_blocked": int}``;
    keys absent from the file are absent from the result. Per-CPU lists are
    in :data:`CPU_STAT_FIELDS` order and padded with zeros on old kernels. The
    aggregate ``cpu`` line is not returned.
    """
    result: dict = {"cpus": {}}
    for line in text.splitlines():
        parts = line.split()
        if not parts:
            continue
        key = parts[0]
        if key.startswith("cpu") and key[3:].isdigit():
            ticks = [float(v) for v in parts[1 : 1 + len(CPU_STAT_FIELDS)]]
            ticks.extend([0.0] * (len(CPU_STAT_FIELDS) - len(ticks)))
            result["cpus"][key[3:]] = ticks
        elif key in ("intr", "ctxt", "btime", "processes", "procs_running", "procs_blocked") and len(parts) > 1:
            # "intr" is followed by per-IRQ counts; its first number is the total.
            result[key] = int(parts[1])
    return result


def parse_loadavg(text: str) -> tuple[float, float, float]:
    """Parse /proc/loadavg: the 1, 5 and 15 minute load averages."""
    parts = text.split()
    return float(parts[0]), float(parts[1]), float(parts[2])


def parse_meminfo(text: str) -> dict[str, float]:
    """Parse /proc/meminfo into node_exporter's key spelling.

    ``"Active(anon):  1234 kB"`` becomes ``{"Active_anon_bytes": 1263616.0}``:
    parentheses turn into an underscore prefix, a ``kB`` unit is converted to
    bytes and adds the ``_bytes`` suffix; unitless fields (``HugePages_Total``)
    keep their name and value.
    """
    result: dict[str, float] = {}
    for line in text.splitlines():
        parts = line.split()
        if len(parts) < 2 or not parts[0].endswith(":"):
            continue
        key = _PARENS.sub(r"_\1", parts[0][:-1])
        value = float(parts[1])
        if len(parts) == 3:
            # The kernel only ever prints "kB" (meaning KiB) here.
            key += "_bytes"
            value *= 1024
        result[key] = value
    return result


def parse_key_values(text: str) -> dict[str, float]:
    """Parse ``name value`` lines (/proc/vmstat and the like)."""
    result: dict[str, float] = {}
    for line in text.splitlines():
        parts = line.split()
        if len(parts) == 2:
            result[parts[0]] = float(parts[1])
    return result


def parse_net_dev(text: str) -> dict[str, dict[str, float]]:
    """Parse /proc/net/dev.

    Returns ``{device: {"receive_bytes": v, ..., "transmit_compressed": v}}``
    using the column names of the file's header (:data:`NET_DEV_RECEIVE`,
    :data:`NET_DEV_TRANSMIT`).
    """
    result: dict[str, dict[str, float]] = {}
    for line in text.splitlines()[2:]:
        name, sep, rest = line.partition(":")
        values = rest.split()
        if not sep or len(values) < 16:
            continue
        fields = {f"receive_{k}": float(v) for k, v in zip(NET_DEV_RECEIVE, values[:8])}
        fields.update({f"transmit_{k}": float(v) for k, v in zip(NET_DEV_TRANSMIT, values[8:16])})
        result[name.strip()] = fields
    return result


def parse_diskstats(text: str) -> dict[str, list[int]]:
    """Parse /proc/diskstats.

    Returns ``{device: [field1, field2, ...]}`` with the statistics after the
    major, minor and name columns: 11 fields on kernels before 4.18, 15 with
    discards (4.18+), 17 with flushes (5.5+). Time fields are milliseconds,
    sector fields count 512-byte units whatever the device's sector size.
    """
    result: dict[str, list[int]] = {}
    for line in text.splitlines():
        parts = line.split()
        if len(parts) < 14:
            continue
        result[parts[2]] = [int(v) for v in parts[3:]]
    return result


def unescape_mount_field(field: str) -> str:
    """Undo the octal escapes (``\\040`` for a space) of /proc/mounts."""
    return _OCTAL_ESCAPE.sub(lambda m: chr(int(m.group(1), 8)), field)


def parse_mounts(text: str) -> list[tuple[str, str, str, list[str]]]:
    """Parse /proc/mounts (or /proc/<pid>/mounts).

    Returns ``[(device, mountpoint, fstype, options), ...]`` in file order,
    with escapes decoded and the options split on commas.
    """
    result = []
    for line in text.splitlines():
        parts = line.split()
        if len(parts) < 4:
            continue
        result.append(
            (
                unescape_mount_field(parts[0]),
                unescape_mount_field(parts[1]),
                parts[2],
                parts[3].split(","),
            )
        )
    return result


def parse_snmp_tables(text: str) -> dict[str, dict[str, float]]:
    """Parse /proc/net/snmp and /proc/net/netstat.

    Both are pairs of lines, a header ``Proto: Name1 Name2 ...`` followed by
    ``Proto: v1 v2 ...``. Returns ``{proto: {name: value}}``. A pair whose
    lengths differ is skipped.
    """
    result: dict[str, dict[str, float]] = {}
    lines = [line.split() for line in text.splitlines() if line.strip()]
    for header, values in zip(lines[0::2], lines[1::2]):
        if len(header) != len(values) or header[0] != values[0] or not header[0].endswith(":"):
            continue
        proto = header[0][:-1]
        result.setdefault(proto, {}).update(
            {name: float(value) for name, value in zip(header[1:], values[1:])}
        )
    return result


def parse_snmp6(text: str) -> dict[str, dict[str, float]]:
    """Parse /proc/net/snmp6 (``Ip6InReceives  123`` lines).

    The protocol is the name up to and including its first ``6``:
    ``{"Ip6": {"InReceives": 123.0}, "Udp6": {...}}``.
    """
    result: dict[str, dict[str, float]] = {}
    for line in text.splitlines():
        parts = line.split()
        if len(parts) != 2:
            continue
        six = parts[0].find("6")
        if six == -1:
            continue
        result.setdefault(parts[0][: six + 1], {})[parts[0][six + 1 :]] = float(parts[1])
    return result


def parse_sockstat(text: str) -> dict[str, dict[str, float]]:
    """Parse /proc/net/sockstat and /proc/net/sockstat6.

    ``"TCP: inuse 5 orphan 0 tw 2 alloc 7 mem 1"`` becomes
    ``{"TCP": {"inuse": 5.0, "orphan": 0.0, "tw": 2.0, "alloc": 7.0, "mem": 1.0}}``;
    ``"sockets: used 11"`` becomes ``{"sockets": {"used": 11.0}}``. ``mem`` is
    in pages, ``memory`` (FRAG) in bytes.
    """
    result: dict[str, dict[str, float]] = {}
    for line in text.splitlines():
        proto, sep, rest = line.partition(":")
        parts = rest.split()
        if not sep or len(parts) % 2:
            continue
        result[proto.strip()] = {k: float(v) for k, v in zip(parts[0::2], parts[1::2])}
    return result


def parse_pressure(text: str) -> dict[str, float]:
    """Parse one /proc/pressure/<resource> file.

    Returns ``{"some": total, "full": total}`` (only the lines present), the
    cumulative stall time in microseconds.
    """
    result: dict[str, float] = {}
    for line in text.splitlines():
        parts = line.split()
        if not parts or parts[0] not in ("some", "full"):
            continue
        for item in parts[1:]:
            key, _, value = item.partition("=")
            if key == "total":
                result[parts[0]] = float(value)
    return result


def parse_softnet(text: str) -> list[tuple[str, list[int]]]:
    """Parse /proc/net/softnet_stat (hexadecimal columns, one row per CPU).

    Returns ``[(cpu, [col0, col1, ...]), ...]``. The CPU id is column 12 on
    kernels that print it (5.10+), else the row number (older kernels skip
    offline CPUs, so the row number is only a best guess there).
    Columns: 0 processed, 1 dropped, 2 time_squeeze, 8 cpu_collision,
    9 received_rps, 10 flow_limit_count, 11 backlog length.
    """
    result = []
    for row, line in enumerate(text.splitlines()):
        cols = [int(v, 16) for v in line.split()]
        if len(cols) < 3:
            continue
        cpu = str(cols[12]) if len(cols) >= 13 else str(row)
        result.append((cpu, cols))
    return result
