"""Notification routing configuration: Alertmanager's matcher syntax (the cases of its
``pkg/labels/parse_test.go``), time intervals (``timeinterval_test.go``), validation of the
configuration with file:line errors, and route matching compared with the real
Alertmanager's ``amtool config routes test`` on the same file."""
from __future__ import annotations

import shutil
import subprocess
from datetime import datetime
from pathlib import Path

import pytest
import yaml

from console.config import ConfigError, load_config
from console.notify.config import parse_notifications
from console.notify.dispatch import build_route, labelset_string
from console.matchers import MatcherError, parse_matchers
from console.notify.timeinterval import TimeInterval
from tests.conftest import need


# (input, [(name, op, value)]) from prometheus/alertmanager pkg/labels/parse_test.go
PARSE_CASES = [
    ("{}", []),
    ("{foo='}", [("foo", "=", "'")]),
    ("{foo=`}", [("foo", "=", "`")]),
    ('{foo=\\"}', [("foo", "=", '"')]),
    ("{foo=bar}", [("foo", "=", "bar")]),
    ('{foo="bar"}', [("foo", "=", "bar")]),
    ("{foo=~bar.*}", [("foo", "=~", "bar.*")]),
    ('{foo!~"bar.*"}', [("foo", "!~", "bar.*")]),
    ('{foo="bar", baz!="quux"}', [("foo", "=", "bar"), ("baz", "!=", "quux")]),
    ('{foo="bar",baz!~".*quux", derp="wat"}', [("foo", "=", "bar"), ("baz", "!~", ".*quux"), ("derp", "=", "wat")]),
    ('{foo=""}', [("foo", "=", "")]),
    ('{foo="bar,quux", job="job1"}', [("foo", "=", "bar,quux"), ("job", "=", "job1")]),
    ('{foo = "bar", dings != "bums", }', [("foo", "=", "bar"), ("dings", "!=", "bums")]),
    ("foo=bar,dings!=bums", [("foo", "=", "bar"), ("dings", "!=", "bums")]),
    ('{quote="She said: \\"Hi, ladies! That\'s gender-neutral…\\""}',
     [("quote", "=", "She said: \"Hi, ladies! That's gender-neutral…\"")]),
    ('statuscode=~"5.."', [("statuscode", "=~", "5..")]),
    ("tricky=~~~", [("tricky", "=~", "~~")]),
    ('trickier==\\\\=\\=\\"', [("trickier", "=", '=\\=\\="')]),
    ('contains_quote != "\\"" , contains_comma !~ "foo,bar" , ',
     [("contains_quote", "!=", '"'), ("contains_comma", "!~", "foo,bar")]),
    ("{foo=bar}}", [("foo", "=", "bar}")]),
    ("{foo=bar}},}", [("foo", "=", "bar}}")]),
    ("{foo=,bar=}}", [("foo", "=", ""), ("bar", "=", "}")]),
    ("{foo=bar\\t}", [("foo", "=", "bar\\t")]),
    ("{foo=bar\\n}", [("foo", "=", "bar\n")]),
    ("{foo=bar\\}", [("foo", "=", "bar\\")]),
    ("{foo=bar\\\\}", [("foo", "=", "bar\\")]),
    ('{foo=bar\\"}', [("foo", "=", 'bar"')]),
    ("job=", [("job", "=", "")]),
    ("{foo=", [("foo", "=", "")]),
    ("{foo=}b", [("foo", "=", "}b")]),
]
PARSE_ERRORS = [
    (",", "bad matcher format: "),
    ("{,}", "bad matcher format: "),
    ('job="value', 'matcher value contains unescaped double quote: "value'),
    ('job=value"', 'matcher value contains unescaped double quote: value"'),
    ('trickier==\\\\=\\=\\""', 'matcher value contains unescaped double quote: =\\\\=\\=\\""'),
    ('contains_unescaped_quote = foo"bar', 'matcher value contains unescaped double quote: foo"bar'),
    ('{invalid-name = "valid label"}', 'bad matcher format: invalid-name = "valid label"'),
    ('"{foo=\\"bar"}', 'bad matcher format: "{foo=\\"bar"'),
    ("{{foo=", "bad matcher format: {foo="),
]


@pytest.mark.parametrize("text,want", PARSE_CASES)
def test_matchers_parse_as_alertmanager(text, want):
    assert [(m.name, m.op, m.value) for m in parse_matchers(text)] == want


@pytest.mark.parametrize("text,error", PARSE_ERRORS)
def test_matchers_refused_as_alertmanager(text, error):
    with pytest.raises(MatcherError) as exc:
        parse_matchers(text)
    assert str(exc.value) == error


def test_a_refused_regex_writes_nothing_to_stderr(capfd):  # noqa: ANN001
    # RE2 logs a refused pattern to the process's stderr unless told not to
    with pytest.raises(MatcherError):
        parse_matchers('severity=~"["')
    assert capfd.readouterr().err == ""


def test_regex_matchers_are_re2_and_fully_anchored():
    (m,) = parse_matchers('severity=~"crit|page"')
    assert m.matches("crit") and m.matches("page")
    assert not m.matches("critical") and not m.matches("xpage")  # anchored: no partial match
    (m,) = parse_matchers('x!~"a+"')
    assert m.matches("") and m.matches("ab") and not m.matches("aaa")
    with pytest.raises(MatcherError) as refused:
        parse_matchers('foo=~"invalid[regexp"')
    # RE2's reason quotes the user's pattern, not the anchored one compiled
    assert str(refused.value) == "invalid regular expression 'invalid[regexp' for foo: missing ]: [regexp"
    with pytest.raises(MatcherError, match="invalid regular expression"):
        parse_matchers('foo=~"(a)\\1"')  # a backreference: not RE2
    (missing,) = parse_matchers('team=""')
    assert missing.matches("")  # a missing label matches as the empty value


def _at(text: str) -> float:
    return datetime.strptime(text, "%d %b %y %H:%M %z").timestamp()


# From prometheus/alertmanager timeinterval/timeinterval_test.go: (interval as YAML, inside, outside)
INTERVAL_CASES = [
    ({"times": [{"start_time": "09:00", "end_time": "17:00"}], "weekdays": ["monday:friday"]},
     ["04 May 20 15:04 +0000", "05 May 20 10:04 +0000", "09 Jun 20 09:04 +0000"],
     ["03 May 20 15:04 +0000", "04 May 20 08:59 +0000", "05 May 20 05:00 +0000"]),
    ({"days_of_month": ["4:6"], "months": ["april"], "years": ["2020"]},
     ["04 Apr 20 15:04 +0000", "05 Apr 20 00:00 +0000", "06 Apr 20 23:05 +0000"],
     ["03 May 18 15:04 +0000", "03 Apr 20 23:59 +0000", "04 Jun 20 23:59 +0000", "06 Apr 19 23:59 +0000",
      "07 Apr 20 00:00 +0000"]),
    ({"days_of_month": ["-3:-1"]},
     ["31 Jan 20 15:04 +0000", "30 Jan 20 15:04 +0000", "29 Jan 20 15:04 +0000", "30 Jun 20 00:00 +0000",
      "29 Feb 20 23:05 +0000"],
     ["03 May 18 15:04 +0000", "27 Jan 20 15:04 +0000", "03 Apr 20 23:59 +0000", "04 Jun 20 23:59 +0000",
      "06 Apr 19 23:59 +0000", "07 Apr 20 00:00 +0000", "01 Mar 20 00:00 +0000"]),
    ({"months": ["6"], "days_of_month": ["25:31"]},  # 31 is clamped to June's 30
     ["30 Jun 20 00:00 +0000", "25 Jun 20 00:00 +0000"], ["31 May 20 00:00 +0000", "01 Jul 20 00:00 +0000"]),
    ({"times": [{"start_time": "09:00", "end_time": "17:00"}], "weekdays": ["monday:friday"],
      "location": "Australia/Sydney"},
     ["06 Apr 21 13:00 +1000"], ["06 Apr 21 13:00 +0000"]),
    ({"times": [{"start_time": "09:00", "end_time": "17:00"}], "weekdays": ["monday:friday"],
      "months": ["november"], "location": "Australia/Sydney"},
     ["01 Nov 21 09:00 +1100", "31 Oct 21 22:00 +0000"], ["31 Oct 21 21:00 +0000"]),
    ({"days_of_month": ["-1"], "location": "America/New_York"},
     ["31 Mar 21 12:00 -0400"], ["30 Mar 21 12:00 -0400"]),
    ({"times": [{"start_time": "00:00", "end_time": "24:00"}], "weekdays": ["Saturday", "sunday"]},
     ["02 May 20 23:59 +0000", "03 May 20 00:00 +0000"], ["04 May 20 00:00 +0000"]),
]


def _interval(spec: dict) -> TimeInterval:
    doc = {"route": {"receiver": "r"}, "receivers": [{"name": "r"}],
           "time_intervals": [{"name": "t", "time_intervals": [spec]}]}
    (interval,) = parse_notifications(doc, lambda loc: None, "n").intervals()["t"]
    return interval


@pytest.mark.parametrize("spec,inside,outside", INTERVAL_CASES)
def test_time_intervals_contain_as_alertmanager(spec, inside, outside):
    interval = _interval(spec)
    assert [t for t in inside if not interval.contains(_at(t))] == []
    assert [t for t in outside if interval.contains(_at(t))] == []


@pytest.mark.parametrize("spec,error", [
    ({"times": [{"start_time": "17:31", "end_time": "17:31"}]}, "start time cannot be equal or greater"),
    ({"times": [{"start_time": "12:30", "end_time": "24:01"}]}, "invalid format"),
    ({"times": [{"start_time": "09:30", "end_time": "07:41"}]}, "start time cannot be equal or greater"),
    ({"weekdays": ["friday:monday"]}, "start day cannot be before end day"),
    ({"weekdays": ["funday"]}, "funday is not a valid weekday"),
    ({"days_of_month": ["0"]}, "0 is not a valid day of the month"),
    ({"days_of_month": ["-5:3"]}, "end day must be negative if start day is negative"),
    ({"days_of_month": ["10:-25"]}, "end day -25 is always before start day 10"),
    ({"months": ["march:january"]}, "end month 1 is before start month 3"),
    ({"years": ["2030:2020"]}, "end year 2020 is before start year 2030"),
    ({"location": "Mars/Olympus_Mons"}, "unknown time zone"),
    ({"hours": ["1"]}, "unknown key"),
])
def test_time_interval_errors(spec, error):
    with pytest.raises(ConfigError, match=error):
        _interval(spec)


def _config_file(tmp_path: Path, notifications: str) -> Path:
    path = tmp_path / "config.yaml"
    path.write_text("alerting:\n  default_rules: false\n  notifications:\n"
                    + "".join(f"    {line}\n" for line in notifications.strip("\n").splitlines()))
    return path


@pytest.mark.parametrize("body,message", [
    ("route:\n  group_by: [alertname]\nreceivers:\n  - name: a\n",
     "alerting.notifications.route: root route must specify a default receiver (from {F} line 4)"),
    ("route:\n  receiver: a\n  matchers: ['x=\"1\"']\nreceivers:\n  - name: a\n",
     "alerting.notifications.route: root route must not have any matchers (from {F} line 4)"),
    ("route:\n  receiver: a\n  routes:\n    - receiver: b\nreceivers:\n  - name: a\n",
     "alerting.notifications.route.routes[0].receiver: undefined receiver 'b' used in route (from {F} line 7)"),
    ("route:\n  receiver: a\n  routes:\n    - mute_time_intervals: [nights]\nreceivers:\n  - name: a\n",
     "alerting.notifications.route.routes[0].mute_time_intervals[0]: undefined time interval 'nights' used in "
     "route (from {F} line 7)"),
    ("route:\n  receiver: a\n  group_by: [alertname, '...']\nreceivers:\n  - name: a\n",
     "alerting.notifications.route.group_by: cannot have wildcard group_by (`...`) and other labels at the same "
     "time (from {F} line 6)"),
    ("route:\n  receiver: a\n  group_interval: 0s\nreceivers:\n  - name: a\n",
     "alerting.notifications.route.group_interval: cannot be zero (from {F} line 6)"),
    ("route:\n  receiver: a\n  group_wait: soon\nreceivers:\n  - name: a\n",
     "alerting.notifications.route.group_wait: must be a duration such as 30s, 5m or 4h, got 'soon' "
     "(from {F} line 6)"),
    ("route:\n  receiver: a\n  routes:\n    - matchers: ['sev=~\"(\"']\nreceivers:\n  - name: a\n",
     "alerting.notifications.route.routes[0].matchers: entry 0: invalid regular expression '(' for sev"),
    ("route:\n  receiver: a\n  routes:\n    - match_re: {sev: '['}\nreceivers:\n  - name: a\n",
     "alerting.notifications.route.routes[0].match_re: invalid regular expression '[' for sev"),
    ("route:\n  receiver: a\n  contineu: true\nreceivers:\n  - name: a\n",
     "alerting.notifications.route.contineu: unknown key (from {F} line 6)"),
    ("route:\n  receiver: a\nreceivers:\n  - name: a\n  - name: a\n",
     "alerting.notifications.receivers[1].name: notification config name 'a' is not unique (from {F} line 8)"),
    ("route:\n  receiver: a\nreceivers:\n  - name: a\n    webhook_configs:\n      - url: http://x\n        bogus: 1\n",
     "alerting.notifications.receivers[0].webhook_configs[0].bogus: unknown key (from {F} line 10)"),
    ("route:\n  receiver: a\nreceivers:\n  - name: a\ninhibit_rules:\n  - source_matchers: ['a=\"1\"']\n"
     "    equal: ['bad-name']\n",
     "alerting.notifications.inhibit_rules[0].equal: invalid label name 'bad-name' (from {F} line 10)"),
    ("route:\n  receiver: a\nreceivers:\n  - name: a\ntemplates: ['/etc/alertmanager/*.tmpl']\n",
     "alerting.notifications.templates: Alertmanager's Go template files are not read"),
])
def test_configuration_errors_name_key_file_and_line(tmp_path, body, message):
    path = _config_file(tmp_path, body)
    with pytest.raises(ConfigError) as exc:
        load_config(path=str(path), env={})
    assert message.replace("{F}", str(path)) in str(exc.value)


def test_notifications_from_a_file_named_by_the_config(tmp_path):
    (tmp_path / "am.yml").write_text("route:\n  receiver: team\nreceivers:\n  - name: other\n")
    path = tmp_path / "config.yaml"
    path.write_text("alerting:\n  notifications: am.yml\n")
    with pytest.raises(ConfigError) as exc:
        load_config(path=str(path), env={})
    assert str(exc.value) == (f"alerting.notifications.route.receiver: undefined receiver 'team' used in route "
                              f"(from {tmp_path / 'am.yml'} line 2)")
    (tmp_path / "am.yml").write_text("route:\n  receiver: team\nreceivers:\n  - name: team\n")
    assert load_config(path=str(path), env={}).alerting.notifications == str(tmp_path / "am.yml")
    path.write_text("alerting:\n  notifications: missing.yml\n")
    with pytest.raises(ConfigError, match="missing.yml"):
        load_config(path=str(path), env={})


ROUTING = """
route:
  receiver: default
  group_by: [alertname]
  group_wait: 10s
  routes:
    - matchers: ['severity=~"critical|page"']
      receiver: pager
      continue: true
    - match:
        team: db
      receiver: db
      group_by: ['...']
      routes:
        - match_re:
            env: prod.*
          receiver: db-prod
          group_wait: 1m
        - matchers: ['env!~"prod.*"', 'region="eu"']
          receiver: db-eu
    - matchers: ['team="web"', 'service=~"api|front"']
      receiver: web
      continue: true
    - matchers: ['team="web"']
      receiver: web-all
    - matchers: ['team!=""']
      receiver: any-team
receivers:
  - name: default
  - name: pager
  - name: db
  - name: db-prod
  - name: db-eu
  - name: web
  - name: web-all
  - name: any-team
"""
LABEL_SETS = [
    {"alertname": "A"},
    {"alertname": "A", "severity": "critical"},
    {"alertname": "A", "severity": "criticalx"},
    {"severity": "page", "team": "db", "env": "production"},
    {"team": "db", "env": "staging", "region": "eu"},
    {"team": "db", "env": "staging", "region": "us"},
    {"team": "db"},
    {"team": "web", "service": "api"},
    {"team": "web", "service": "apix"},
    {"team": "web", "service": "front", "severity": "page"},
    {"team": "ops"},
    {"team": "", "severity": "warning"},
]


def test_routes_match_amtool(tmp_path):
    """Every label set goes to the receivers the real Alertmanager's route test names, in order."""
    amtool = shutil.which("amtool")
    if amtool is None:
        need("alertmanager", "amtool is not installed")
    path = tmp_path / "alertmanager.yml"
    path.write_text(ROUTING)
    root = build_route(parse_notifications(yaml.safe_load(ROUTING), lambda loc: None, "n").route)
    for labels in LABEL_SETS:
        out = subprocess.run([amtool, "config", "routes", "test", f"--config.file={path}",
                              *[f"{k}={v}" for k, v in labels.items()]],
                             capture_output=True, text=True, timeout=30, check=True)
        expected = out.stdout.strip().split(",")
        assert [r.receiver for r in root.match(labels)] == expected, labels


def test_route_options_inherit_and_keys_as_alertmanager():
    root = build_route(parse_notifications(yaml.safe_load(ROUTING), lambda loc: None, "n").route)
    routes = {r.receiver: r for r in root.walk()}
    assert (root.group_wait, root.group_interval, root.repeat_interval) == (10, 300, 4 * 3600)
    db_prod = routes["db-prod"]
    assert (db_prod.group_wait, db_prod.group_by_all) == (60, True)  # its own wait; group_by ... inherited
    assert routes["db-eu"].group_wait == 10 and routes["pager"].group_by == frozenset({"alertname"})
    assert db_prod.key == '{}/{team="db"}/{env=~"prod.*"}'
    assert routes["db-eu"].key == '{}/{team="db"}/{env!~"prod.*",region="eu"}'
    assert routes["web"].key == '{}/{service=~"api|front",team="web"}'  # sorted by name
    # Alertmanager numbers routes children first.
    assert [r.receiver for r in sorted(root.walk(), key=lambda r: r.idx)] == [
        "pager", "db-prod", "db-eu", "db", "web", "web-all", "any-team", "default"]
    assert labelset_string({"b": 'x"y', "a": "1"}) == '{a="1", b="x\\"y"}'


def test_defaults_without_timers():
    root = build_route(parse_notifications({"route": {"receiver": "r"}, "receivers": [{"name": "r"}]},
                                           lambda loc: None, "n").route)
    assert (root.group_wait, root.group_interval, root.repeat_interval) == (30, 300, 4 * 3600)
    assert root.group_by == frozenset() and not root.group_by_all


def test_default_inhibit_rules_is_a_strict_bool(tmp_path):
    path = tmp_path / "config.yaml"
    path.write_text("alerting:\n  default_inhibit_rules: 'no'\n")
    with pytest.raises(ConfigError) as exc:
        load_config(path=str(path), env={})
    assert str(exc.value) == f"alerting.default_inhibit_rules: must be true or false, got 'no' (from {path} line 2)"
