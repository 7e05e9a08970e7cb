"""The alert state machine of one alerting rule, as Prometheus' ``rules/alerting.go``
(``AlertingRule.Eval``, 2.42 with ``keep_firing_for``), plus the hysteresis extensions.

Per label set: inactive -> pending (the expression returns it) -> firing (it kept
returning it for ``for``) -> inactive again ("resolved") once it is gone. A pending alert
whose series disappears is dropped; a resolved one is kept 15 minutes
(``resolvedRetention``), and a new result during that time starts a fresh pending alert.
``keep_firing_for`` keeps a firing alert firing that long after its series disappeared.

Extensions (docs/alerting.md, "Hysteresis"): with ``recover_expr`` a firing alert whose
series disappeared resolves only when ``recover_expr`` returns a sample whose labels all
equal the alert's; with ``for_resolved`` it resolves only once it has been clear (gone,
and recovered) for that long. Times are Unix seconds.
"""
from __future__ import annotations

from dataclasses import dataclass, field

from console.alerting.rules import AlertRule
from console.promql.values import NAME, Labels, Sample, make_labels

RESOLVED_RETENTION_S = 15 * 60  # Prometheus' resolvedRetention
PENDING, FIRING, INACTIVE = "pending", "firing", "inactive"


class RuleEvalError(Exception):
    """The rule's result cannot become alerts (duplicate label sets, over the limit)."""


@dataclass
class Alert:
    labels: Labels  # without __name__, with alertname
    annotations: dict[str, str]
    state: str
    value: float
    active_at: float
    fired_at: float | None = None
    resolved_at: float | None = None
    keep_firing_since: float | None = None
    clear_since: float | None = None
    last_eval: float | None = None


@dataclass
class Transition:
    """A state change to store in the history: ``state`` pending, firing, resolved or
    inactive (a pending alert dropped)."""

    ts: float
    state: str
    labels: Labels
    annotations: dict[str, str]
    value: float
    muted_by: str | None = None  # comma-separated KIND:ID reasons (console/notify/muting.py)


@dataclass
class RuleState:
    rule: AlertRule
    active: dict[Labels, Alert] = field(default_factory=dict)
    health: str = "unknown"  # ok | err | unknown, as Prometheus' rule health
    last_error: str = ""
    last_evaluation: float | None = None
    evaluation_seconds: float = 0.0

    def record(self, result: list[Sample]) -> dict[Labels, float]:
        """One evaluation of a recording rule: ``{labels: value}`` of the series it
        records (``__name__`` = the rule's name, then its labels, as Prometheus' recording
        rule). Raises RuleEvalError for two samples with one label set."""
        fresh: dict[Labels, float] = {}
        for sample in result:
            metric = dict(sample.labels)
            labels = {**metric, NAME: self.rule.name}
            for name, render in self.rule.label_templates.items():
                labels[name] = render(metric, sample.value)
            key = make_labels(labels)
            if key in fresh:
                raise RuleEvalError("vector contains metrics with the same labelset after applying rule labels")
            fresh[key] = sample.value
        return fresh

    def alert_from(self, sample: Sample, ts: float) -> Alert:
        metric = dict(sample.labels)
        labels = {k: v for k, v in metric.items() if k != NAME}
        for name, render in self.rule.label_templates.items():
            labels[name] = render(metric, sample.value)
        labels["alertname"] = self.rule.name
        annotations = {name: render(metric, sample.value)
                       for name, render in self.rule.annotation_templates.items()}
        return Alert(make_labels(labels), annotations, PENDING, sample.value, ts)

    def needs_recovery_check(self, result: list[Sample], ts: float) -> bool:
        """Whether ``recover_expr`` must be evaluated: a firing alert's series is gone."""
        if self.rule.recover_node is None:
            return False
        present = {self.alert_from(s, ts).labels for s in result}
        return any(a.state == FIRING and key not in present for key, a in self.active.items())

    def eval(self, result: list[Sample], ts: float, limit: int = 0,
             recovered: list[Sample] | None = None) -> list[Transition]:
        """Apply one evaluation's vector at ``ts``; returns the transitions. Raises
        RuleEvalError (state untouched for duplicates; cleared over the limit, as
        Prometheus)."""
        rule = self.rule
        fresh: dict[Labels, Alert] = {}
        for sample in result:
            alert = self.alert_from(sample, ts)
            if alert.labels in fresh:
                raise RuleEvalError("vector contains metrics with the same labelset after applying alert labels")
            fresh[alert.labels] = alert
        out: list[Transition] = []
        for key, alert in fresh.items():
            current = self.active.get(key)
            if current is not None and current.state != INACTIVE:
                current.value = alert.value
                current.annotations = alert.annotations
                continue
            self.active[key] = alert
            out.append(Transition(ts, PENDING, key, alert.annotations, alert.value))
        recovered_sets = [dict(s.labels) for s in recovered or ()]
        active_pending = 0
        for key, alert in list(self.active.items()):
            if key not in fresh:
                keep = False
                if alert.state == FIRING:
                    if rule.keep_firing_for_s > 0:
                        if alert.keep_firing_since is None:
                            alert.keep_firing_since = ts
                        keep = ts - alert.keep_firing_since < rule.keep_firing_for_s
                    if rule.recover_node is not None and not self._recovered(key, recovered_sets):
                        alert.clear_since = None
                        keep = True
                    elif rule.for_resolved_s > 0:
                        if alert.clear_since is None:
                            alert.clear_since = ts
                        keep = keep or ts - alert.clear_since < rule.for_resolved_s
                if alert.state == PENDING or (alert.resolved_at is not None
                                              and ts - alert.resolved_at > RESOLVED_RETENTION_S):
                    del self.active[key]
                if alert.state != INACTIVE and not keep:
                    out.append(Transition(ts, "resolved" if alert.state == FIRING else INACTIVE, key,
                                          alert.annotations, alert.value))
                    alert.state = INACTIVE
                    alert.resolved_at = ts
                if not keep:
                    continue
            else:
                alert.keep_firing_since = None
                alert.clear_since = None
            active_pending += 1
            if alert.state == PENDING and ts - alert.active_at >= rule.hold_s:
                alert.state = FIRING
                alert.fired_at = ts
                out.append(Transition(ts, FIRING, key, alert.annotations, alert.value))
            alert.last_eval = ts
        if limit and active_pending > limit:
            self.active.clear()
            raise RuleEvalError(f"exceeded limit of {limit} with {active_pending} alerts")
        return out

    @staticmethod
    def _recovered(key: Labels, recovered_sets: list[dict]) -> bool:
        alert = dict(key)
        return any(all(alert.get(k) == v for k, v in labels.items() if k != NAME) for labels in recovered_sets)
