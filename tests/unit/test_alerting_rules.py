"""Rule files: Prometheus' format validated at load with FILE:LINE errors, the template
subset, the hysteresis extensions, and the ``alerting:`` configuration section."""
from __future__ import annotations

import shutil
import subprocess

import pytest

from console.alerting.rules import RuleFileError, load_all, load_file, parse_duration, threshold_split
from console.alerting.templates import TemplateError, compile_template, humanize
from console.config import ConfigError, load_config
from tests.conftest import need

HEAD = "groups:\n  - name: g\n    rules:\n"


def rule_file(tmp_path, body: str, head: str = HEAD):
    path = tmp_path / "r.yml"
    path.write_text(head + body)
    return path


@pytest.mark.parametrize("body, line, message", [
    ("      - alert: A\n        expr: up ==\n", 5, "expr: could not parse expression"),
    ("      - alert: A\n        expr: up\n        for: 5 minutes\n", 6, "for: not a valid duration string"),
    ("      - alert: A\n        expr: up\n        labels:\n          bad-name: x\n", 7, "invalid label name: 'bad-name'"),
    ("      - alert: A\n        expr: up\n        annotations:\n          s: '{{ range $labels }}{{ end }}'\n", 7,
     "annotation 's': unsupported template operand 'range $labels'"),
    ("      - alert: A\n        expr: up\n        annotations:\n          s: '{{ query \"up\" | first }}'\n", 7,
     "unsupported template"),
    ("      - alert: A\n        expr: up\n        severity: page\n", 6, "unknown rule field 'severity'"),
    ("      - record: job:up:sum\n        expr: sum(up)\n        for: 1m\n", 6, "invalid field 'for' in recording rule"),
    ("      - record: job up\n        expr: sum(up)\n", 4, "invalid recording rule name: 'job up'"),
    ("      - expr: up\n", 4, "a rule needs a non-empty 'alert' name"),
    ("      - alert: A\n        expr: rate(x[5m])[1m]\n", 5, "expr:"),
    ("      - alert: A\n        expr: up[5m]\n", 5, "expression must be of type vector or scalar, got matrix"),
    ("      - alert: A\n        expr: up\n        recover_expr: up >\n", 6, "recover_expr: could not parse"),
    ("      - alert: A\n        expr: up\n        for_resolved: 1m\n        annotations:\n"
     "          fleetdeck_for_resolved: 2m\n", 6, "for_resolved is given twice"),
    ("      - alert: A\n        expr: up\n        annotations:\n          fleetdeck_recover_expr: 'up >'\n", 7,
     "recover_expr: could not parse"),
    ("      - alert: L\n        type: log\n        query: x\n", 5, "type must be 'logs'"),
    ("      - alert: L\n        type: logs\n        window: 5m\n        threshold: 1\n", 4,
     "log rule 'L': field 'query' is required"),
    ("      - alert: L\n        type: logs\n        query: x\n        expr: up\n        window: 5m\n"
     "        threshold: 1\n", 7, "invalid field 'expr' in log rule 'L'"),
    ("      - alert: L\n        type: logs\n        query: '!!'\n        window: 5m\n        threshold: 1\n", 6,
     "query: q has no word to search for"),
    ("      - alert: L\n        type: logs\n        query: x\n        levels: [loud]\n        window: 5m\n"
     "        threshold: 1\n", 7, "levels: level must be one of"),
    ("      - alert: L\n        type: logs\n        query: x\n        hosts: web-1\n        window: 5m\n"
     "        threshold: 1\n", 7, "hosts must be a non-empty list of names"),
    ("      - alert: L\n        type: logs\n        query: x\n        window: 2d\n        threshold: 1\n", 7,
     "window must be above 0 and at most 1d"),
    ("      - alert: L\n        type: logs\n        query: x\n        window: 5m\n        threshold: -1\n", 8,
     "threshold must be a number >= 0"),
    ("      - alert: L\n        type: logs\n        query: x\n        window: 5m\n        threshold: '3'\n", 8,
     "threshold must be a number >= 0"),
])
def test_errors_name_file_and_line(tmp_path, body, line, message):
    path = rule_file(tmp_path, body)
    with pytest.raises(RuleFileError) as exc:
        load_file(str(path))
    assert str(exc.value).startswith(f"{path}:{line}: "), str(exc.value)
    assert message in str(exc.value)


def test_group_errors(tmp_path):
    path = rule_file(tmp_path, "", "groups:\n  - name: g\n    rules: []\n  - name: g\n    rules: []\n")
    with pytest.raises(RuleFileError, match=r":4: 'g': repeated group name"):
        load_file(str(path))
    path = rule_file(tmp_path, "", "groups:\n  - name: g\n    interval: 0s\n")
    with pytest.raises(RuleFileError, match=r":3: interval must be above 0"):
        load_file(str(path))
    path = rule_file(tmp_path, "", "groups:\n  - name: g\n    evaluation: 1m\n")
    with pytest.raises(RuleFileError, match=r":3: unknown group field 'evaluation'"):
        load_file(str(path))
    path = rule_file(tmp_path, "", "groups:\n  - name: g\n   rules: [\n")
    with pytest.raises(RuleFileError, match=r"r.yml:\d+: invalid YAML"):
        load_file(str(path))


def test_a_valid_file_with_extensions(tmp_path):
    path = rule_file(tmp_path, "      - alert: DiskFull\n        expr: disk_used > 0.9\n        for: 1h30m\n"
                               "        keep_firing_for: 5m\n        labels: {severity: warning}\n"
                               "        annotations:\n          summary: '{{ $labels.mountpoint }} {{ $value | humanizePercentage }}'\n"
                               "          fleetdeck_recover_expr: disk_used < 0.8\n          fleetdeck_for_resolved: 10m\n",
                     "groups:\n  - name: g\n    interval: 30s\n    limit: 10\n    rules:\n")
    [group] = load_file(str(path))
    assert (group.name, group.interval_s, group.limit) == ("g", 30.0, 10)
    [rule] = group.rules
    assert (rule.hold_s, rule.keep_firing_for_s, rule.for_resolved_s, rule.recover_expr) == (
        5400.0, 300.0, 600.0, "disk_used < 0.8")
    assert list(rule.annotations) == ["summary"]  # the extension annotations are settings, not shown
    assert rule.annotation_templates["summary"]({"mountpoint": "/"}, 0.93) == "/ 93%"
    # promtool accepts the annotation form of the extensions
    promtool = shutil.which("promtool")
    if promtool is None:
        need("prometheus", "promtool is not installed")
    result = subprocess.run([promtool, "check", "rules", str(path)], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stdout + result.stderr


def test_load_all_refuses_a_bad_file_whole_and_keeps_loading_the_others(tmp_path):
    (tmp_path / "a.yml").write_text(HEAD + "      - alert: A\n        expr: up\n")
    (tmp_path / "b.yml").write_text(HEAD.replace("name: g", "name: h") + "      - alert: B\n        expr: up ==\n"
                                    "      - alert: C\n        expr: up\n")
    groups, errors = load_all([str(tmp_path / "*.yml"), str(tmp_path / "missing.yml")], 60.0)
    assert [(g.name, [r.name for r in g.rules], g.interval_s) for g in groups] == [("g", ["A"], 60.0)]
    assert set(errors) == {str(tmp_path / "b.yml"), str(tmp_path / "missing.yml")}
    assert errors[str(tmp_path / "missing.yml")] == f"{tmp_path / 'missing.yml'}:0: no such rule file"


def test_durations_as_prometheus():
    assert parse_duration("0") == 0 and parse_duration("0s") == 0
    assert parse_duration("1h30m") == 5400 and parse_duration("1d") == 86400 and parse_duration("500ms") == 0.5
    for bad in ("", "1.5h", "30m1h", "5", "-1m", "1 h"):
        with pytest.raises(ValueError):
            parse_duration(bad)


def test_templates():
    render = compile_template("{{ $labels.instance }}: {{ $value }} ({{ humanize $value }}) "
                              "{{- printf \" %.1f\" $value }} {{ .Labels.job }} {{ $labels.none }}")
    assert render({"instance": "web-1", "job": "node"}, 1234567.0) == "web-1: 1.234567e+06 (1.235M) 1234567.0 node <no value>"
    assert compile_template("{{ $value }}")({}, 0.5) == "0.5"
    assert humanize(0.00123) == "1.23m" and humanize(0) == "0"
    for bad in ("{{ if $value }}x{{ end }}", "{{ $externalLabels.x }}", "{{ $value | title }}", "{{ $value",
                "{{ printf \"%s %s\" $value }}"):
        with pytest.raises(TemplateError):
            compile_template(bad)


def test_alerting_config_section(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("alerting:\n  rule_files: [rules/*.yml, /etc/x.yml]\n  evaluation_interval: 30s\n"
                    "  default_rules: false\n")
    cfg = load_config(path, env={}).alerting
    assert cfg.rule_files == [str(tmp_path / "rules/*.yml"), "/etc/x.yml"]
    assert (cfg.evaluation_interval, cfg.default_rules) == (30.0, False)
    for text, message in [("alerting:\n  rules: []\n", "alerting.rules: unknown key (from"),
                          ("alerting:\n  evaluation_interval: soon\n", "alerting.evaluation_interval: must be seconds"),
                          ("alerting:\n  evaluation_interval: 0\n", "alerting.evaluation_interval: must be greater than 0"),
                          ("alerting:\n  default_rules: maybe\n", "alerting.default_rules: must be true or false"),
                          ("alerting:\n  rule_files: x.yml\n", "alerting.rule_files: must be a valid list"),
                          ("alerts: []\n", "replaced by the alerting: section")]:
        path.write_text(text)
        with pytest.raises(ConfigError, match=message.replace("(", r"\(").replace(")", r"\)")):
            load_config(path, env={})


def test_the_shipped_config_documents_the_alerting_defaults():
    from pathlib import Path

    from console.config import AlertingConfig

    repo = Path(__file__).resolve().parents[2]
    assert load_config(repo / "config.yaml", env={}).alerting == AlertingConfig()


@pytest.mark.parametrize("expr, split", [
    ("node_load1 > 0.9", ('node_load1{}', ">", 0.9)),
    ("0.9 < node_load1", ('node_load1{}', ">", 0.9)),
    ("1e3 >= x", ('x{}', "<=", 1000.0)),
    ("(rate(x[5m]) * 100 != bool -1)", ('rate(x{}[5m]) * 100', "!=", -1.0)),
    ('max by (instance) (up{job="node"}) == 0', ('max by (instance)(up{job="node"})', "==", 0.0)),
    # A raw string's backslash is a backslash (Prometheus), as in a regex Grafana writes.
    ("up{instance=~`127\\.0\\.0\\.1:.*`} < 1", ('up{instance=~"127\\.0\\.0\\.1:.*"}', "<", 1.0)),
    ("x > 0.9 and y", None),  # not a comparison at the top
    ("x > y", None),  # no number to draw
    ("x + 1", None),  # arithmetic, not a comparison
    ("1 > 2", None),  # nothing to chart against
    ("x >", None),  # unparsable
])
def test_threshold_split_separates_a_top_level_comparison_with_a_number(expr, split):
    assert threshold_split(expr) == split
