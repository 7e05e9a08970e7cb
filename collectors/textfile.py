"""The ``textfile`` input: ``*.prom`` files of a directory, as node_exporter's textfile
collector reads them (https://github.com/prometheus/node_exporter#textfile-collector).

Every collect reads every ``*.prom`` file of ``directory`` (not its subdirectories) and
parses it whole with ``prometheus_client.parser`` (text exposition format); its samples
are reported as they are, with no ``job`` or ``instance`` of their own (they describe this
host, like the host collector's). Per successfully read file,
``node_textfile_mtime_seconds{file="<path>"}``; and ``node_textfile_scrape_error``, 1 when
any file could not be read or parsed, else 0: the names and meaning node_exporter uses.

Writers must replace files atomically (write ``name.prom.$$``, then rename it to
``name.prom``): a temporary name does not match ``*.prom``. A file that fails to parse,
or whose last line has no line feed (the format requires one, so a file cut off mid-line
is refused), contributes nothing: never a part of a file. A file cut exactly at a line
feed cannot be told from a complete one; only the atomic rename prevents that.
Samples with a timestamp are refused, as node_exporter refuses them.
"""
from __future__ import annotations

import glob
import logging
import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from collectors.base import Collector, Sample
from collectors.prometheus import sample_type

log = logging.getLogger(__name__)

MAX_FILE_BYTES = 16 * 1024 * 1024  # a larger file is an error, not read


class TextfileOptionsError(ValueError):
    """Invalid ``textfile:`` options; the message names the key."""


@dataclass
class TextfileOptions:
    """The agent's ``textfile:`` settings: ``directory`` (absolute path) holding ``*.prom``
    files; empty: the input has nothing to read."""

    directory: str = ""

    @classmethod
    def from_mapping(cls, value: Any, source: str = "config") -> "TextfileOptions":
        """Validate the YAML ``textfile:`` section; raises :class:`TextfileOptionsError`."""
        if value is None:
            return cls()
        if isinstance(value, TextfileOptions):
            return value
        if not isinstance(value, Mapping):
            raise TextfileOptionsError(f"textfile (from {source}) must be a mapping")
        unknown = sorted(str(k) for k in value if k != "directory")
        if unknown:
            raise TextfileOptionsError(f"textfile.{unknown[0]} (from {source}) is not a known option; "
                                       "known: directory")
        directory = value.get("directory", "")
        if not isinstance(directory, str) or (directory and not os.path.isabs(directory)):
            raise TextfileOptionsError(f"textfile.directory (from {source}) must be an absolute path")
        return cls(directory)


class TextfileCollector(Collector):
    """Reads ``options.directory`` on every :meth:`collect` (see the module docstring).
    A missing directory is an error (``node_textfile_scrape_error`` 1), not a crash.
    Raises ValueError when ``prometheus_client`` is missing."""

    name = "textfile"

    def __init__(self, options: TextfileOptions) -> None:
        try:
            from prometheus_client.parser import text_string_to_metric_families
        except ImportError:
            raise ValueError("the textfile input needs the prometheus-client package "
                             "(pip install prometheus-client)") from None
        self._parse = text_string_to_metric_families
        self.directory = options.directory

    def collect(self) -> Iterable[Sample]:
        out: list[Sample] = []
        error = False
        if not os.path.isdir(self.directory):
            log.warning("textfile directory %s does not exist", self.directory)
            error = True
        for path in sorted(glob.glob(os.path.join(glob.escape(self.directory), "*.prom"))):
            try:
                samples, mtime = self.read(path)
            except (OSError, ValueError, UnicodeDecodeError) as exc:
                log.warning("textfile %s skipped: %s", path, exc)
                error = True
                continue
            out.extend(samples)
            out.append(Sample("node_textfile_mtime_seconds", {"file": path}, mtime))
        out.append(Sample("node_textfile_scrape_error", {}, 1.0 if error else 0.0))
        return out

    def read(self, path: str) -> tuple[list[Sample], float]:
        """-> (every sample of the file at ``path``, its mtime in Unix seconds). Raises
        OSError when it cannot be read, ValueError when any of it cannot be parsed."""
        with open(path, "rb") as fh:
            mtime = os.fstat(fh.fileno()).st_mtime
            data = fh.read(MAX_FILE_BYTES + 1)
        if len(data) > MAX_FILE_BYTES:
            raise ValueError(f"larger than {MAX_FILE_BYTES} bytes")
        if data and not data.endswith(b"\n"):
            raise ValueError("the last line has no line feed (a file still being written?)")
        samples = []
        for family in self._parse(data.decode("utf-8")):
            for raw in family.samples:
                if raw.timestamp is not None:
                    raise ValueError(f"{raw.name} has a timestamp, which textfiles must not have")
                labels = {k: v for k, v in raw.labels.items() if v != ""}
                samples.append(Sample(raw.name, labels, raw.value, sample_type(family.type, raw.name, family.name)))
        return samples, mtime
