"""The agent's `prometheus:` and `textfile:` sections: every bad value is refused at load,
naming the key and where it came from."""
from __future__ import annotations

import pytest

from agents.config import ConfigError, load_agent_config

TARGET = {"job_name": "app", "url": "http://127.0.0.1:8080/metrics"}


def load(tmp_path, text: str):
    path = tmp_path / "agent.yaml"
    path.write_text(text)
    return load_agent_config(str(path), {}, environ={})


def test_a_full_target_and_textfile_directory_load(tmp_path):
    config = load(tmp_path, """
interval: 10
collectors: [host, prometheus, textfile]
prometheus:
  targets:
    - job_name: app
      url: https://app.example:8443/metrics
      interval: 30
      timeout: 5
      honor_labels: true
      labels: {team: web}
      metric_relabel_configs:
        - {source_labels: [__name__, code], separator: "/", regex: "http_.*/5..", action: keep}
    - {job_name: node, url: "http://127.0.0.1/metrics"}
textfile:
  directory: /var/lib/node_exporter/textfile
""")
    first, second = config.prometheus.targets
    assert (first.interval, first.timeout, first.honor_labels, first.labels) == (30.0, 5.0, True, {"team": "web"})
    assert first.metric_relabel_configs[0].source_labels == ("__name__", "code")
    assert first.instance == "app.example:8443"
    assert second.instance == "127.0.0.1:80" and second.interval is None
    assert config.textfile.directory == "/var/lib/node_exporter/textfile"


@pytest.mark.parametrize("text,message", [
    ("collectors: [prometheus]\nprometheus: {targets: [{job_name: a, url: 'http://x/m', scheme: http}]}\n",
     r"prometheus\.targets\[0\]\.scheme \(from .*agent\.yaml line \d+\) is not a known option"),
    ("collectors: [prometheus]\nprometheus: {targets: [], scrape_interval: 5}\n",
     r"prometheus\.scrape_interval .* is not a known option"),
    ("collectors: [prometheus]\nprometheus: {targets: [{job_name: a}]}\n",
     r"prometheus\.targets\[0\]\.url .* must be an http:// or https:// URL"),
    ("collectors: [prometheus]\nprometheus: {targets: [{job_name: a, url: 'ftp://x/m'}]}\n",
     r"prometheus\.targets\[0\]\.url"),
    ("collectors: [prometheus]\nprometheus: {targets: [{url: 'http://x/m'}]}\n",
     r"prometheus\.targets\[0\]\.job_name"),
    ("collectors: [prometheus]\nprometheus: {targets: [{job_name: a, url: 'http://x/m', interval: 0}]}\n",
     r"prometheus\.targets\[0\]\.interval .* must be a number of seconds in \(0, 86400\]"),
    ("collectors: [prometheus]\nprometheus: {targets: [{job_name: a, url: 'http://x/m', interval: '10'}]}\n",
     r"prometheus\.targets\[0\]\.interval"),
    ("interval: 10\ncollectors: [prometheus]\nprometheus: {targets: [{job_name: a, url: 'http://x/m', interval: 15}]}\n",
     r"prometheus\.targets\[0\]\.interval .* must be a whole multiple of the agent's interval \(10 s\), got 15"),
    ("interval: 10\ncollectors: [prometheus]\nprometheus: {targets: [{job_name: a, url: 'http://x/m', interval: 5}]}\n",
     r"whole multiple"),
    ("interval: 10\ncollectors: [prometheus]\nprometheus: {targets: [{job_name: a, url: 'http://x/m', timeout: 20}]}\n",
     r"prometheus\.targets\[0\]\.timeout .* must not exceed the target's interval \(10 s\)"),
    ("collectors: [prometheus]\nprometheus: {targets: [{job_name: a, url: 'http://x/m', honor_labels: 'yes'}]}\n",
     r"honor_labels .* must be true or false"),
    ("collectors: [prometheus]\nprometheus: {targets: [{job_name: a, url: 'http://x/m', labels: {job: b}}]}\n",
     r"labels\.job .* job is set from job_name"),
    ("collectors: [prometheus]\nprometheus: {targets: [{job_name: a, url: 'http://x/m', labels: {'a-b': c}}]}\n",
     r"invalid label name 'a-b'"),
    ("collectors: [prometheus]\nprometheus: {targets: [{job_name: a, url: 'http://x/m', "
     "metric_relabel_configs: [{source_labels: [__name__], regex: 'go_(', action: drop}]}]}\n",
     r"metric_relabel_configs\[0\]\.regex .* is not a valid RE2 regex: missing \)"),
    ("collectors: [prometheus]\nprometheus: {targets: [{job_name: a, url: 'http://x/m', "
     "metric_relabel_configs: [{source_labels: [__name__], regex: 'a', action: replace}]}]}\n",
     r"metric_relabel_configs\[0\]\.action .* must be one of keep, drop, got 'replace'"),
    ("collectors: [prometheus]\nprometheus: {targets: [{job_name: a, url: 'http://x/m', "
     "metric_relabel_configs: [{regex: 'a', action: keep}]}]}\n",
     r"metric_relabel_configs\[0\]\.source_labels .* must be a non-empty list of label names"),
    ("collectors: [prometheus]\nprometheus: {targets: [{job_name: a, url: 'http://x/m', "
     "metric_relabel_configs: [{source_labels: [a], action: keep, target_label: b}]}]}\n",
     r"metric_relabel_configs\[0\]\.target_label .* is not a known option"),
    ("collectors: [prometheus]\nprometheus: {targets: [{job_name: a, url: 'http://x/m'}, "
     "{job_name: a, url: 'http://x/m'}]}\n", r"prometheus\.targets\[1\] .* already scrapes"),
    ("collectors: [host]\nprometheus: {targets: [{job_name: a, url: 'http://x/m'}]}\n",
     r"prometheus\.targets .* is set but the prometheus input is not in collectors"),
    ("collectors: [host, prometheus]\n", r"names the prometheus input but prometheus\.targets is not set"),
    ("collectors: [host, textfile]\n", r"names the textfile input but textfile\.directory is not set"),
    ("collectors: [host]\ntextfile: {directory: /tmp}\n", r"textfile\.directory .* is set but the textfile input"),
    ("collectors: [textfile]\ntextfile: {directory: relative/dir}\n", r"textfile\.directory .* must be an absolute path"),
    ("collectors: [textfile]\ntextfile: {directory: /tmp, pattern: '*.prom'}\n",
     r"textfile\.pattern .* is not a known option; known: directory"),
    ("collectors: [textfile]\ntextfile: {directory: /tmp}\ncollector_options: {textfile: {directory: /x}}\n",
     r"collector_options\.textfile .* in its own `textfile:` section"),
])
def test_bad_input_settings_are_refused_naming_the_key(tmp_path, text, message):
    with pytest.raises(ConfigError, match=message):
        load(tmp_path, text)
