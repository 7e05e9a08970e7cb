"""Deploy-aware muting and the post-deploy watch (docs/alerting.md, "Deploys").

**Hold.** While a deploy of an app runs, and for ``alerting.deploy_settle`` seconds after
it ends (whatever its outcome), alerts on that app's targets are muted with the reason
``deploy:<id>``: alerts whose ``app`` label is the app, or whose host (label ``host``,
else ``instance``) is one the app deploys to (its ``hosts``, and for the ssh driver the
inventory hosts of its target); alerts about a deploy (with a ``deploy_id`` label, as
DeployFailed and DeployRegression) are never held. Muted is not dropped: the dispatcher notifies an alert
once no reason is left, if it still fires (console/notify/muting.py). The deploys are
re-read every HOLD_REFRESH_S seconds, so a hold starts at most that long after a deploy.

**Watch.** For an app with ``alerting.deploy_watch.APP``, once a deploy of it succeeded
and ``window`` seconds passed, each signal's PromQL expression is averaged over the
window after the deploy ended and over the same length of time before it began
(``max(avg_over_time((EXPR)[window:step]))``, the largest series when it returns
several). It regresses when ``after > before * (1 + ratio)`` or ``after - before >
absolute`` (whichever are configured; with no data on either side it does not). Each
verdict is stored (``deploy_watch_results``); a regression shows for
REGRESSION_WINDOW_S as the computed series ``fleetdeck_deploy_regression{app,
deploy_id, signal}`` (its value the signal after the deploy), which the shipped rule
``DeployRegression`` turns into an alert through the rule pipeline: alert state,
history, muting and notifications as every other alert.
"""
from __future__ import annotations

import asyncio
import logging
import math
import time
from collections.abc import Mapping
from dataclasses import dataclass
from threading import Lock
from typing import Any, Callable

from sqlalchemy import select
from sqlalchemy.orm import Session

from console.config import ConfigError, DeployWatch
from console.i18n import TextLines, tx
from console.promql.storage import VirtualSeries, VirtualSource
from console.promql.values import NAME, make_labels
from console.storage.database import Database
from console.storage.models import Deploy, DeployWatchResult

log = logging.getLogger("fleetdeck.maintenance")

HOLD_REFRESH_S = 1.0
RECENT_DEPLOYS = 500  # the newest deploys looked at for ones that ended within the settle time
WATCH_TICK_S = 15.0
# Deploys that ended longer ago than this are not watched (a console started after a
# long stop does not judge old deploys against data it may no longer hold).
WATCH_HORIZON_S = 86400.0
REGRESSION_WINDOW_S = 3600  # how long fleetdeck_deploy_regression stays present
REGRESSION_STEP_S = 60
REGRESSION_SERIES = "fleetdeck_deploy_regression"
SUBQUERY_POINTS = 30  # samples of the signal averaged per window


def app_hosts(apps: Mapping, inventory=None) -> dict[str, frozenset]:  # noqa: ANN001 - Inventory
    """App name -> the hosts it deploys to: its ``hosts`` plus, for an ssh target, the
    inventory hosts its ``target.hosts`` name (hosts or groups)."""
    out = {}
    for name, app in apps.items():
        hosts = set(app.hosts)
        target_hosts = getattr(app.target, "hosts", None)
        if app.driver == "ssh" and target_hosts and inventory is not None:
            try:
                hosts.update(h.name for h in inventory.resolve(target_hosts))
            except Exception as exc:  # noqa: BLE001 - an unresolvable name fails its deploy, not the console
                log.warning("app %s: target hosts not resolved for deploy holds: %s", name, exc)
        out[name] = frozenset(hosts)
    return out


def check_watch(watch: Mapping[str, DeployWatch], apps: Mapping, source_of=None) -> None:  # noqa: ANN001
    """Refuse ``alerting.deploy_watch`` entries naming no configured app (ConfigError
    naming the key and, given the loader's ``source_of("alerting")``, its line)."""
    problems = []
    for name in watch:
        if name not in apps:
            where = source_of(("deploy_watch", name)) if source_of else None
            problem = tx("{key}: no app {name} in the apps: section", key=f"alerting.deploy_watch.{name}",
                         name=repr(name))
            problems.append(tx("{message} ({source})", message=problem, source=where) if where else problem)
    if problems:
        raise ConfigError(TextLines(problems))


@dataclass(frozen=True)
class _Held:
    deploy_id: int
    app: str
    started_at: float
    finished_at: float | None


class DeployHold:
    """A Muter (console/notify/muting.py) with reasons ``deploy:<id>``. ``refresh`` reads
    the deploys running or ended within the settle time; ``start`` does it every
    HOLD_REFRESH_S on the running loop."""

    def __init__(self, db: Database, settle_s: float, app_hosts: Mapping[str, frozenset],
                 clock: Callable[[], float] = time.time) -> None:
        self.db = db
        self.settle_s = settle_s
        self.app_hosts = dict(app_hosts)
        self.clock = clock
        self._held: tuple[_Held, ...] = ()
        self._lock = Lock()
        self._task: asyncio.Task | None = None

    def _read(self, session: Session) -> tuple[_Held, ...]:
        # Read every HOLD_REFRESH_S: both lookups use an index (state; the newest ids), as
        # the deploys that ended within the settle time are among the newest.
        since = self.clock() - self.settle_s
        columns = (Deploy.id, Deploy.app, Deploy.started_at, Deploy.finished_at)
        running = session.execute(select(*columns).where(Deploy.state == "running", Deploy.started_at.is_not(None)))
        newest = session.execute(select(*columns).order_by(Deploy.id.desc()).limit(RECENT_DEPLOYS))
        held: dict[int, _Held] = {}
        for deploy_id, app, started_at, finished_at in running:
            if started_at is not None:  # as the query asks
                held[deploy_id] = _Held(deploy_id, app, started_at, finished_at)
        for deploy_id, app, started_at, finished_at in newest:
            if started_at is not None and finished_at is not None and finished_at >= since:
                held[deploy_id] = _Held(deploy_id, app, started_at, finished_at)
        return tuple(held[k] for k in sorted(held))

    async def refresh(self) -> None:
        held = await self.db.read(self._read)
        with self._lock:
            self._held = held

    def start(self) -> None:
        self.db.run(lambda s: setattr(self, "_held", self._read(s)))
        self._task = asyncio.ensure_future(self._refresh_forever())

    async def _refresh_forever(self) -> None:
        while True:
            await asyncio.sleep(HOLD_REFRESH_S)
            try:
                await self.refresh()
            except Exception:  # a database outage: logged, the next round retries
                log.exception("deploy hold: reading deploys failed")

    def close(self) -> None:
        if self._task is not None:
            self._task.cancel()

    def muted_by(self, labels: Mapping[str, str], now: float) -> list[str]:
        """``deploy:<id>`` for each deploy of an app covering ``labels`` that runs at
        ``now`` or ended less than the settle time before it."""
        with self._lock:
            held = self._held
        if not held:
            return []
        if "deploy_id" in labels:  # an alert about a deploy (DeployFailed, DeployRegression), not caused by one
            return []
        host = labels.get("host") or labels.get("instance", "")
        app = labels.get("app")
        out = []
        for d in held:
            if d.started_at > now or (d.finished_at is not None and now >= d.finished_at + self.settle_s):
                continue
            if app == d.app or host in self.app_hosts.get(d.app, ()):
                out.append(f"deploy:{d.deploy_id}")
        return out


def regressed(before: float | None, after: float | None, ratio: float | None, absolute: float | None) -> bool:
    """The watch's verdict for one signal (see the module docstring)."""
    if before is None or after is None:
        return False
    if ratio is not None and after > before * (1 + ratio):
        return True
    return absolute is not None and after - before > absolute


class DeployWatcher(VirtualSource):
    """Judges finished deploys of watched apps (``tick``, every WATCH_TICK_S once
    started) and serves ``fleetdeck_deploy_regression`` to PromQL (a VirtualSource the
    alerting service adds to its computed series)."""

    names = frozenset({REGRESSION_SERIES})

    def __init__(self, db: Database, promql, watch: Mapping[str, DeployWatch],  # noqa: ANN001 - PromQLService
                 clock: Callable[[], float] = time.time, leads: Callable[[], bool] = lambda: True) -> None:
        self._leads = leads  # one console of several judges each deploy
        self.db = db
        self.promql = promql
        self.watch = dict(watch)
        self.clock = clock
        self._task: asyncio.Task | None = None

    def start(self) -> None:
        if self.watch:
            self._task = asyncio.ensure_future(self._tick_forever())

    def close(self) -> None:
        if self._task is not None:
            self._task.cancel()

    async def _tick_forever(self) -> None:
        while True:
            await asyncio.sleep(WATCH_TICK_S)
            try:
                if self._leads():
                    await self.tick()
            except Exception:  # a database outage: logged, the next tick retries
                log.exception("deploy watch failed")

    def _due(self, session: Session, now: float) -> list[tuple[int, str, float, float]]:
        judged = select(DeployWatchResult.deploy_id)
        rows = session.execute(select(Deploy.id, Deploy.app, Deploy.started_at, Deploy.finished_at).where(
            Deploy.kind == "deploy", Deploy.state == "succeeded", Deploy.app.in_(list(self.watch)),
            Deploy.finished_at >= now - WATCH_HORIZON_S, Deploy.id.not_in(judged)).order_by(Deploy.id))
        # A succeeded deploy has started and finished (the bound on finished_at excludes NULL too).
        return [(deploy_id, app, started_at, finished_at) for deploy_id, app, started_at, finished_at in rows
                if started_at is not None and finished_at is not None
                and finished_at + self.watch[app].window <= now]

    async def tick(self) -> list[dict]:
        """Judge every deploy whose watch window has passed; returns the verdicts stored
        (``{"deploy_id", "app", "signal", "before", "after", "regression"}``)."""
        now = self.clock()
        out: list[dict[str, Any]] = []
        for deploy_id, app, started_at, finished_at in await self.db.read(self._due, now):
            watch = self.watch[app]
            for signal in watch.signals:
                # Up to just before the deploy began: a sample at its start is the new version's.
                before = await self._average(signal.expr, watch.window, started_at - 0.001)
                after = await self._average(signal.expr, watch.window, finished_at + watch.window)
                out.append({"deploy_id": deploy_id, "app": app, "signal": signal.name, "before": before,
                            "after": after, "regression": regressed(before, after, signal.ratio, signal.absolute)})
            if any(v["regression"] for v in out if v["deploy_id"] == deploy_id):
                log.warning("deploy %d of %s: regression in %s", deploy_id, app,
                            ", ".join(v["signal"] for v in out if v["deploy_id"] == deploy_id and v["regression"]))
        if out:
            await self.db.write(self._store, out, now)
        return out

    async def _average(self, expr: str, window_s: float, at: float) -> float | None:
        step_ms = max(1000, round(window_s * 1000 / SUBQUERY_POINTS))
        text = f"max(avg_over_time(({expr})[{round(window_s * 1000)}ms:{step_ms}ms]))"
        try:
            data, _ = await self.promql.query(text, at, primary=True)
        except Exception as exc:  # noqa: BLE001 - a signal that cannot be evaluated is judged "no data"
            log.warning("deploy watch: %s at %s: %s", expr, at, getattr(exc, "message", exc))
            return None
        result = data.get("result") or []
        if not result:
            return None
        value = float(result[0]["value"][1])
        return value if math.isfinite(value) else None

    @staticmethod
    def _store(session: Session, verdicts: list[dict], now: float) -> None:
        for v in verdicts:
            session.add(DeployWatchResult(deploy_id=v["deploy_id"], app=v["app"], signal=v["signal"],
                                          before=v["before"], after=v["after"], regression=v["regression"],
                                          evaluated_at=now))

    async def verdicts(self, deploy_id: int) -> list[dict]:
        """The watch's stored verdicts for ``deploy_id`` (as ``results``), read off the IOLoop."""
        return await self.db.read(self.results, deploy_id)

    def results(self, session: Session, deploy_id: int) -> list[dict]:
        """The watch's verdicts for one deploy."""
        rows = session.scalars(select(DeployWatchResult).where(DeployWatchResult.deploy_id == deploy_id)
                               .order_by(DeployWatchResult.signal))
        return [{"signal": r.signal, "before": r.before, "after": r.after, "regression": r.regression,
                 "evaluated_at": r.evaluated_at} for r in rows]

    def series(self, session: Session, name: str | None = None) -> list[VirtualSeries]:
        """``fleetdeck_deploy_regression{app, deploy_id, signal}`` = the signal's value after
        the deploy, a sample every REGRESSION_STEP_S from the verdict for
        REGRESSION_WINDOW_S, then stale."""
        if name not in (None, REGRESSION_SERIES):
            return []
        now_ms = round(self.clock() * 1000)
        window_ms, step_ms = REGRESSION_WINDOW_S * 1000, REGRESSION_STEP_S * 1000
        out = []
        rows = session.execute(select(DeployWatchResult.deploy_id, DeployWatchResult.app, DeployWatchResult.signal,
                                      DeployWatchResult.after, DeployWatchResult.evaluated_at).where(
            DeployWatchResult.regression.is_(True),
            DeployWatchResult.evaluated_at > (now_ms - window_ms) / 1000).order_by(DeployWatchResult.id))
        for deploy_id, app, signal, after, evaluated_at in rows:
            lo = round(evaluated_at * 1000)
            if lo > now_ms:
                continue
            end = lo + window_ms

            def points(mint: int, maxt: int, lo=lo, hi=min(end - 1, now_ms), value=after) -> tuple[list, list]:
                first = lo + max(0, -(-(mint - lo) // step_ms)) * step_ms
                ts = list(range(first, min(hi, maxt) + 1, step_ms))
                return ts, [float(value)] * len(ts)
            labels = make_labels({NAME: REGRESSION_SERIES, "app": app, "deploy_id": str(deploy_id),
                                  "signal": signal})
            out.append(VirtualSeries(labels, points, end))
        return out
