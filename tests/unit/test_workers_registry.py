"""The registry of a worker of ``serve --workers N`` (console/telemetry.py) over the
workers' prometheus_client files, as the library writes them."""
from __future__ import annotations

from prometheus_client import generate_latest
from prometheus_client.mmap_dict import MmapedDict, mmap_key

from console.telemetry import WorkersRegistry


def counter_file(path, pid: int, value: float) -> None:
    values = MmapedDict(str(path / f"counter_{pid}.db"))
    values.write_value(mmap_key("fleetdeck_ingest_samples_total", "fleetdeck_ingest_samples_total", (), (),
                                "Samples committed."), value, 0.0)
    values.close()


def test_a_file_a_worker_has_made_but_not_sized_yet_is_skipped_not_a_failed_scrape(tmp_path):
    counter_file(tmp_path, 101, 5.0)
    counter_file(tmp_path, 102, 7.0)
    # A worker started again makes its first histogram's file: empty until the library sizes it.
    (tmp_path / "histogram_103.db").touch()
    text = generate_latest(WorkersRegistry(str(tmp_path))).decode()
    assert "fleetdeck_ingest_samples_total 12.0" in text, text
    (tmp_path / "histogram_103.db").unlink()
    counter_file(tmp_path, 103, 1.0)
    assert "fleetdeck_ingest_samples_total 13.0" in generate_latest(WorkersRegistry(str(tmp_path))).decode()
