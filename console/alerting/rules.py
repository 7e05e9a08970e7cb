"""Rule files in Prometheus' format (``rulefmt``), validated at load with file:line errors.

A file holds ``groups: [{name, interval?, limit?, rules: [...]}]``; each rule is
``{alert, expr, for?, keep_firing_for?, labels?, annotations?}`` or
``{record, expr, labels?}`` (Prometheus 2.42's fields). Recorded series are stored as
series like any other (docs/alerting.md, "Recording rules").

Two extensions (docs/alerting.md, "Hysteresis"), each accepted either as a rule key or,
so that the file still passes ``promtool check rules``, as an annotation with the
``fleetdeck_`` prefix (the annotation is then configuration, not shown with the alert):

- ``recover_expr`` / ``fleetdeck_recover_expr``: PromQL; a firing alert resolves only
  once this expression returns a sample whose labels all match the alert's;
- ``for_resolved`` / ``fleetdeck_for_resolved``: a duration the condition must stay
  false (and ``recover_expr`` true) before a firing alert resolves.

A third extension, log rules (docs/alerting.md, "Log rules"): ``type: logs`` with
``query`` (the log search syntax of ``/api/v1/logs``' ``q``), optional ``hosts``,
``source`` and ``levels`` filters, ``window`` and ``threshold``: the rule counts the
matching log lines of each host over the window and the host is in the result while the
count is above the threshold. ``for``, ``keep_firing_for``, ``for_resolved``, ``labels``
and ``annotations`` work as for PromQL rules. promtool refuses such rules, so they
belong in their own rule files.

Errors are :class:`RuleFileError` whose message starts ``FILE:LINE:``; one error refuses
the whole file (and a reload keeps the previous rules).
"""
from __future__ import annotations

import glob
import os
import re
from dataclasses import dataclass, field
from typing import Any

import promql_parser
import yaml

from console.alerting.templates import Render, TemplateError, compile_template
from console.logs.service import LogQueryError, parse_query
from console.promql import ast

_DURATION = re.compile(r"(?:(\d+)y)?(?:(\d+)w)?(?:(\d+)d)?(?:(\d+)h)?(?:(\d+)m)?(?:(\d+)s)?(?:(\d+)ms)?\Z")
_DURATION_UNITS = (365 * 86400, 7 * 86400, 86400, 3600, 60, 1, 0.001)
_LABEL_NAME = re.compile(r"[a-zA-Z_][a-zA-Z0-9_]*\Z")
_METRIC_NAME = re.compile(r"[a-zA-Z_:][a-zA-Z0-9_:]*\Z")
_GROUP_KEYS = {"name", "interval", "limit", "rules", "query_offset"}
_RULE_KEYS = {"alert", "record", "expr", "for", "keep_firing_for", "labels", "annotations",
              "recover_expr", "for_resolved"}
_LOG_RULE_KEYS = {"alert", "type", "query", "hosts", "source", "levels", "window", "threshold", "for",
                  "keep_firing_for", "for_resolved", "labels", "annotations"}
MAX_LOG_WINDOW_S = 86400.0  # a log rule counts at most a day of lines per evaluation
EXTENSION_PREFIX = "fleetdeck_"


class RuleFileError(ValueError):
    """``FILE:LINE: message``."""


def parse_duration(text: Any) -> float:
    """A Prometheus duration (``"1h30m"``, ``"0s"``, ``"0"``) -> seconds; ValueError
    otherwise (``model.ParseDuration``: units y w d h m s ms, largest first)."""
    if not isinstance(text, str) or not text:
        raise ValueError(f"not a duration: {text!r}")
    if text == "0":
        return 0.0
    m = _DURATION.match(text)
    if not m or not any(m.groups()):
        raise ValueError(f"not a valid duration string: {text!r}")
    return float(sum(int(g) * unit for g, unit in zip(m.groups(), _DURATION_UNITS) if g))


class _LineLoader(yaml.SafeLoader):
    """A SafeLoader whose mappings remember the line of each key (1-based)."""


class LineDict(dict):
    line: int = 0
    key_lines: dict


def _construct_mapping(loader: _LineLoader, node: yaml.MappingNode) -> LineDict:
    loader.flatten_mapping(node)
    out = LineDict()
    out.line = node.start_mark.line + 1
    out.key_lines = {}
    for key_node, value_node in node.value:
        key = loader.construct_object(key_node, deep=True)
        if key in out:
            raise yaml.constructor.ConstructorError(None, None, f"duplicate key {key!r}", key_node.start_mark)
        out[key] = loader.construct_object(value_node, deep=True)
        out.key_lines[key] = key_node.start_mark.line + 1
    return out


_LineLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _construct_mapping)


@dataclass(frozen=True)
class LogCondition:
    """What a log rule counts: lines matching ``query`` (a :class:`LogQuery` without
    times) in the ``window_s`` seconds up to the evaluation, per host, above ``threshold``."""

    query: Any  # console.logs.service.LogQuery
    window_s: float
    threshold: float


@dataclass
class AlertRule:
    """One alerting rule. Durations in seconds; ``expr``/``recover_expr`` keep the text
    and the parsed tree."""

    name: str
    expr: str
    node: ast.Node | None  # None for a log rule
    hold_s: float = 0.0
    keep_firing_for_s: float = 0.0
    labels: dict[str, str] = field(default_factory=dict)
    annotations: dict[str, str] = field(default_factory=dict)
    label_templates: dict[str, Render] = field(default_factory=dict, repr=False)
    annotation_templates: dict[str, Render] = field(default_factory=dict, repr=False)
    recover_expr: str | None = None
    recover_node: ast.Node | None = None
    for_resolved_s: float = 0.0
    line: int = 0
    record: bool = False  # a recording rule: ``name`` is the series it records
    logs: LogCondition | None = None  # a log rule (``node`` is then None)


@dataclass
class Group:
    name: str
    file: str
    interval_s: float
    limit: int
    rules: list[AlertRule]

    @property
    def key(self) -> str:
        """Prometheus' group key: ``FILE;NAME``."""
        return f"{self.file};{self.name}"


def _err(path: str, line: int, message: str) -> RuleFileError:
    return RuleFileError(f"{path}:{line}: {message}")


def _duration(path: str, where: LineDict, key: str) -> float:
    try:
        return parse_duration(where[key])
    except ValueError as exc:
        raise _err(path, where.key_lines[key], f"{key}: {exc}") from None


def _expr(path: str, line: int, key: str, text: Any) -> ast.Node:
    if not isinstance(text, str) or not text.strip():
        raise _err(path, line, f"{key} must be a non-empty PromQL string")
    try:
        node = ast.parse(text)
    except ast.ParseError as exc:
        raise _err(path, line, f"{key}: could not parse expression: {exc}") from None
    except ast.Unsupported as exc:
        raise _err(path, line, f"{key}: unsupported PromQL construct: {exc}") from None
    kind = ast.value_type(node)
    if kind not in (ast.VECTOR, ast.SCALAR):
        raise _err(path, line, f"{key}: expression must be of type vector or scalar, got {kind}")
    return node


def _string_map(path: str, rule: LineDict, key: str) -> tuple[dict[str, str], dict[str, Render]]:
    raw = rule.get(key)
    line = rule.key_lines.get(key, rule.line)
    if raw is None:
        return {}, {}
    if not isinstance(raw, dict):
        raise _err(path, line, f"{key} must be a mapping of names to strings")
    values, templates = {}, {}
    for name, value in raw.items():
        vline = raw.key_lines.get(name, line) if isinstance(raw, LineDict) else line
        if not isinstance(name, str) or not _LABEL_NAME.match(name) or (key == "labels" and name == "__name__"):
            raise _err(path, vline, f"invalid {key[:-1]} name: {name!r}")
        if isinstance(value, bool) or not isinstance(value, (str, int, float)):
            raise _err(path, vline, f"{key[:-1]} {name!r} must be a string")
        text = str(value)
        try:
            templates[name] = compile_template(text)
        except TemplateError as exc:
            raise _err(path, vline, f"{key[:-1]} {name!r}: {exc}") from None
        values[name] = text
    return values, templates


def _rule(path: str, rule: Any, fallback_line: int) -> AlertRule:
    if not isinstance(rule, LineDict):
        raise _err(path, fallback_line, "a rule must be a mapping")
    if "type" in rule:
        if rule["type"] != "logs":
            raise _err(path, rule.key_lines["type"], f"type must be 'logs' (a log rule), got {rule['type']!r}")
        return _log_rule(path, rule)
    unknown = sorted(set(rule) - _RULE_KEYS, key=str)
    if unknown:
        raise _err(path, rule.key_lines[unknown[0]], f"unknown rule field {unknown[0]!r}")
    if "record" in rule:
        return _recording_rule(path, rule)
    name = rule.get("alert")
    if not isinstance(name, str) or not name:
        raise _err(path, rule.line, "a rule needs a non-empty 'alert' name")
    if "expr" not in rule:
        raise _err(path, rule.line, f"alert {name!r}: field 'expr' is required")
    node = _expr(path, rule.key_lines["expr"], "expr", rule["expr"])
    labels, label_templates = _string_map(path, rule, "labels")
    annotations, annotation_templates = _string_map(path, rule, "annotations")
    out = AlertRule(name=name, expr=rule["expr"], node=node, labels=labels, annotations=annotations,
                    label_templates=label_templates, annotation_templates=annotation_templates,
                    line=rule.line)
    if "for" in rule:
        out.hold_s = _duration(path, rule, "for")
    if "keep_firing_for" in rule:
        out.keep_firing_for_s = _duration(path, rule, "keep_firing_for")
    ann_lines = rule["annotations"].key_lines if isinstance(rule.get("annotations"), LineDict) else {}
    for key in ("recover_expr", "for_resolved"):
        ann = EXTENSION_PREFIX + key
        if key in rule and ann in annotations:
            raise _err(path, rule.key_lines[key], f"{key} is given twice (as a field and as annotation {ann})")
        if ann in annotations:
            text = annotations.pop(ann)
            annotation_templates.pop(ann)
            holder = LineDict({key: text})
            holder.key_lines = {key: ann_lines.get(ann, rule.line)}
        elif key in rule:
            holder = rule
        else:
            continue
        if key == "recover_expr":
            out.recover_expr = holder[key]
            out.recover_node = _expr(path, holder.key_lines[key], key, holder[key])
        else:
            out.for_resolved_s = _duration(path, holder, key)
    return out


def _log_rule(path: str, rule: LineDict) -> AlertRule:
    name = rule.get("alert")
    if not isinstance(name, str) or not name:
        raise _err(path, rule.line, "a log rule needs a non-empty 'alert' name")
    unknown = sorted(set(rule) - _LOG_RULE_KEYS, key=str)
    if unknown:
        raise _err(path, rule.key_lines[unknown[0]], f"invalid field {unknown[0]!r} in log rule {name!r}")
    for key in ("query", "window", "threshold"):
        if key not in rule:
            raise _err(path, rule.line, f"log rule {name!r}: field {key!r} is required")
    args = {}
    for key, param in (("query", "q"), ("source", "source")):
        if key in rule:
            if not isinstance(rule[key], str):
                raise _err(path, rule.key_lines[key], f"{key} must be a string")
            args[param] = rule[key]
    for key, param in (("hosts", "host"), ("levels", "level")):
        if key in rule:
            value = rule[key]
            if not isinstance(value, list) or not value or not all(isinstance(v, str) and v and "," not in v
                                                                   for v in value):
                raise _err(path, rule.key_lines[key], f"{key} must be a non-empty list of names")
            args[param] = ",".join(value)
    try:
        query = parse_query(args, 0.0)
    except LogQueryError as exc:
        key = {"q": "query", "host": "hosts", "level": "levels"}.get(exc.parameter, exc.parameter)
        raise _err(path, rule.key_lines.get(key, rule.line), f"{key}: {exc}") from None
    window = _duration(path, rule, "window")
    if not 0 < window <= MAX_LOG_WINDOW_S:
        raise _err(path, rule.key_lines["window"], "window must be above 0 and at most 1d")
    threshold = rule["threshold"]
    if isinstance(threshold, bool) or not isinstance(threshold, (int, float)) or threshold < 0:
        raise _err(path, rule.key_lines["threshold"], "threshold must be a number >= 0")
    labels, label_templates = _string_map(path, rule, "labels")
    annotations, annotation_templates = _string_map(path, rule, "annotations")
    # The text stands for the rule where a PromQL rule shows its expression (API, state
    # carried over a reload or restart only while it is unchanged).
    expr = "logs(" + ", ".join(f"{k}={rule[k]!r}" for k in ("query", "hosts", "source", "levels") if k in rule)
    expr += f", window={rule['window']}) > {threshold}"
    out = AlertRule(name=name, expr=expr, node=None, labels=labels, annotations=annotations,
                    label_templates=label_templates, annotation_templates=annotation_templates, line=rule.line,
                    logs=LogCondition(query, window, float(threshold)))
    for key in ("for", "keep_firing_for", "for_resolved"):
        if key in rule:
            setattr(out, {"for": "hold_s", "keep_firing_for": "keep_firing_for_s",
                          "for_resolved": "for_resolved_s"}[key], _duration(path, rule, key))
    return out


def _recording_rule(path: str, rule: LineDict) -> AlertRule:
    name = rule["record"]
    if "alert" in rule:
        raise _err(path, rule.key_lines["alert"], "only one of 'record' and 'alert' must be set")
    if not isinstance(name, str) or not _METRIC_NAME.match(name):
        raise _err(path, rule.key_lines["record"], f"invalid recording rule name: {name!r}")
    for key in ("for", "keep_firing_for", "annotations", "recover_expr", "for_resolved"):
        if key in rule:
            raise _err(path, rule.key_lines[key], f"invalid field {key!r} in recording rule")
    if "expr" not in rule:
        raise _err(path, rule.line, f"recording rule {name!r}: field 'expr' is required")
    node = _expr(path, rule.key_lines["expr"], "expr", rule["expr"])
    labels, templates = _string_map(path, rule, "labels")
    return AlertRule(name=name, expr=rule["expr"], node=node, labels=labels, label_templates=templates,
                     line=rule.line, record=True)


def load_file(path: str) -> list[Group]:
    """Parse and validate one rule file. Raises RuleFileError (``FILE:LINE: ...``)."""
    try:
        with open(path, encoding="utf-8") as fh:
            text = fh.read()
    except OSError as exc:
        raise RuleFileError(f"{path}:0: cannot read: {exc.strerror}") from None
    try:
        doc = yaml.load(text, Loader=_LineLoader)  # noqa: S506 - a SafeLoader subclass
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None) or getattr(exc, "context_mark", None)
        line = mark.line + 1 if mark else 0
        problem = getattr(exc, "problem", None) or str(exc)
        raise RuleFileError(f"{path}:{line}: invalid YAML: {problem}") from None
    if doc is None:
        return []
    if not isinstance(doc, LineDict):
        raise _err(path, 1, "a rule file must hold a mapping with a 'groups' list")
    unknown = sorted(set(doc) - {"groups"}, key=str)
    if unknown:
        raise _err(path, doc.key_lines[unknown[0]], f"unknown top-level field {unknown[0]!r}")
    groups_raw = doc.get("groups") or []
    if not isinstance(groups_raw, list):
        raise _err(path, doc.key_lines.get("groups", 1), "'groups' must be a list")
    groups: list[Group] = []
    seen: set[str] = set()
    for g in groups_raw:
        if not isinstance(g, LineDict):
            raise _err(path, doc.key_lines.get("groups", 1), "a group must be a mapping")
        unknown = sorted(set(g) - _GROUP_KEYS, key=str)
        if unknown:
            raise _err(path, g.key_lines[unknown[0]], f"unknown group field {unknown[0]!r}")
        if "query_offset" in g:
            raise _err(path, g.key_lines["query_offset"], "query_offset is not supported")
        name = g.get("name")
        if not isinstance(name, str) or not name:
            raise _err(path, g.line, "a group needs a non-empty 'name'")
        if name in seen:
            raise _err(path, g.key_lines["name"], f"{name!r}: repeated group name")
        seen.add(name)
        interval = 0.0
        if "interval" in g:
            interval = _duration(path, g, "interval")
            if interval <= 0:
                raise _err(path, g.key_lines["interval"], "interval must be above 0")
        limit = g.get("limit", 0)
        if isinstance(limit, bool) or not isinstance(limit, int) or limit < 0:
            raise _err(path, g.key_lines.get("limit", g.line), "limit must be a whole number >= 0")
        rules_raw = g.get("rules") or []
        if not isinstance(rules_raw, list):
            raise _err(path, g.key_lines.get("rules", g.line), "'rules' must be a list")
        rules = [_rule(path, r, g.key_lines.get("rules", g.line)) for r in rules_raw]
        groups.append(Group(name=name, file=path, interval_s=interval, limit=limit, rules=rules))
    return groups


def expand_globs(patterns: list[str]) -> tuple[list[str], list[str]]:
    """``rule_files`` globs -> (sorted unique paths, errors for patterns matching nothing
    that name no wildcard, i.e. a missing file)."""
    paths: list[str] = []
    errors: list[str] = []
    for pattern in patterns:
        found = sorted(glob.glob(pattern))
        if not found and not glob.has_magic(pattern):
            errors.append(f"{pattern}:0: no such rule file")
        for p in found:
            if os.path.isfile(p) and p not in paths:
                paths.append(p)
    return paths, errors


def load_all(patterns: list[str], default_interval_s: float) -> tuple[list[Group], dict[str, str]]:
    """Every file of ``patterns``: (groups of the files that loaded, {path: error} of those
    refused). Groups without an interval take ``default_interval_s``."""
    paths, missing = expand_globs(patterns)
    errors = {e.split(":0:", 1)[0]: e for e in missing}
    groups: list[Group] = []
    for path in paths:
        try:
            loaded = load_file(path)
        except RuleFileError as exc:
            errors[path] = str(exc)
            continue
        for g in loaded:
            if not g.interval_s:
                g.interval_s = default_interval_s
        groups.extend(loaded)
    return groups, errors


_FLIPPED = {">": "<", "<": ">", ">=": "<=", "<=": ">=", "==": "==", "!=": "!="}


def threshold_split(expr: str) -> tuple[str, str, float] | None:
    """``(query, op, threshold)`` when ``expr`` is, at its top level, a comparison of an
    expression with a number (``X > 0.9``, ``0.9 < X``, ``(X >= bool 3)``), normalised so the
    number is on the right; else None. The rule page charts ``query`` and draws the
    threshold as a line, since charting ``X > 0.9`` itself shows only the samples above it.
    ``query`` is the parser's rendering of the left-hand side (``promql_parser``)."""
    try:
        node = promql_parser.parse(ast.quote_raw_strings(expr))  # raw strings as Prometheus reads them
    except (ValueError, RuntimeError):
        return None
    while isinstance(node, promql_parser.ParenExpr):
        node = node.expr
    if not isinstance(node, promql_parser.BinaryExpr) or str(node.op) not in _FLIPPED:
        return None
    lhs, rhs, op = node.lhs, node.rhs, str(node.op)
    if isinstance(lhs, promql_parser.NumberLiteral) and not isinstance(rhs, promql_parser.NumberLiteral):
        lhs, rhs, op = rhs, lhs, _FLIPPED[op]
    if not isinstance(rhs, promql_parser.NumberLiteral) or isinstance(lhs, promql_parser.NumberLiteral):
        return None
    return str(lhs), op, float(rhs.val)
