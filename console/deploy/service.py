"""The deploy service: the deploy state machine, one active deploy per app, timeouts,
restart recovery, and the bridge from driver threads to storage and the live bus.

States (docs/architecture.md, "The deploy state machine")::

    queued ──▶ running ──▶ succeeded | failed | rolled_back | cancelled
    queued ──▶ cancelled
    awaiting_approval ──▶ queued | rejected | expired | cancelled   (protected lanes, approvals.py)

``rolled_back``: the new version failed its health check and the old one was put back
automatically. ``failed``: the deploy could not be carried out (engine unreachable,
image missing, timeout, console restarted); ``error`` says why. ``cleanup_pending``
marks a finished deploy whose containers may still exist because the engine could not
be reached; a background task retries the driver's ``recover`` until it succeeds.

Drivers block, so they run on this service's own thread pool; their events come back to
the IOLoop with ``call_soon_threadsafe``, are stored in order (one consumer per deploy)
and then published on the live topic ``deploy:<id>``. Times are Unix seconds.

Several consoles may share one database (docs/scaling.md). A running deploy holds a lease:
``runner`` names the console process running it and ``lease_until`` (``LEASE_S`` ahead)
is renewed every ``RENEW_S`` seconds. Claiming a queued deploy is a conditional UPDATE
made under a per-lane lock (a transaction-level advisory lock on PostgreSQL), so two
consoles never run one deploy, nor two deploys of one lane. Every ``TAKEOVER_POLL_S``
seconds each console ends the running deploys whose lease lapsed (their console died) as
failed, "the console running it stopped", and runs the driver's ``recover`` on them, as
crash recovery at start does; drivers are not resumed midway. A runner that finds its
lease taken (it could not renew in time) cancels its driver and stores nothing more.
"""
from __future__ import annotations

import builtins
import asyncio
import logging
import os
import secrets
import socket
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Callable

import orjson
from sqlalchemy import func, or_, select, text, update
from sqlalchemy.orm import Session

from console.audit.service import AuditService
from console.auth.roles import Principal
from console.deploy.apps import AppDefinition, image_reference, valid_app_name, valid_version
from console.deploy.canary import CanaryAnalysis, CanaryGate, analysis_of
from console.deploy.approvals import AWAITING, EXPIRED, REJECTED, ApprovalDesk
from console.deploy.environments import Lane, lane_key, lanes_of
from console.deploy.drivers.base import (CANCELLED, FAILED, ROLLED_BACK, CancelToken, DeployDriver, DeployOutcome,
                                         DeployRequest, DriverEvent, DriverUnavailable)
from console.config import ConfigError
from console.errors import Conflict, NotFound, Unprocessable
from console.i18n import N_, Text, TextLines, list_separator, message_of, text_data, text_from_data, text_lines, tx
from console.live import LiveBus
from console.storage.database import Database, execute_dml
from console.storage.models import AuditEntry, Deploy, DeployEvent, DeployStep

log = logging.getLogger(__name__)

QUEUED, RUNNING, SUCCEEDED = "queued", "running", "succeeded"
ACTIVE_STATES = (AWAITING, QUEUED, RUNNING)
FINAL_STATES = (SUCCEEDED, FAILED, "rolled_back", CANCELLED, REJECTED, EXPIRED)
MAX_REASON = 1000
MAX_LIST = 500
# The lease of a running deploy (seconds): renewed every RENEW_S, valid for LEASE_S; the
# consoles look for lapsed leases every TAKEOVER_POLL_S, so a dead runner's deploy is taken
# over at most LEASE_S + TAKEOVER_POLL_S (20 s) after its last renewal.
LEASE_S, RENEW_S, TAKEOVER_POLL_S = 15.0, 2.0, 5.0
RESTARTED = N_("the console restarted while the deploy was running; its containers are cleaned up")
STOPPED = N_("the console running it stopped (its lease lapsed); its containers are cleaned up")
LEASE_LOST = N_("another console took this deploy over: its lease lapsed before it could be renewed")


def _json(value: Any) -> str:
    return orjson.dumps(value, option=orjson.OPT_NON_STR_KEYS).decode()


def default_driver(app: AppDefinition) -> DeployDriver:
    if app.driver == "docker":
        from console.deploy.drivers.docker import DockerDriver  # docker-py only where deploys run

        return DockerDriver(app)
    raise ValueError(f"no driver {app.driver!r}")



def _text_saying(doc: object, english: str) -> dict | None:
    """The stored template (console/i18n.py ``text_data``) in ``doc`` or among its values
    whose English text is ``english``: a deploy's error is its last state event's message or
    one of its values ("failed after 3.0 s: {error}", "rejected: {reason}")."""
    text = text_from_data(doc)
    if text is None or not isinstance(doc, dict):
        return None
    if text == english:
        return doc
    for value in doc.get("values", {}).values():
        found = _text_saying(value, english)
        if found is not None:
            return found
    return None


def kind_text(kind: str) -> Text | str:
    """A deploy's kind (``deploy``, ``rollback``, ``promote``) as a word of a translatable sentence."""
    if kind == "deploy":
        return tx("deploy")
    if kind == "rollback":
        return tx("rollback")
    if kind == "promote":
        return tx("promote")
    return kind


def state_text(state: str) -> Text | str:
    """A deploy's final state as a word of a translatable sentence (the pages' terms)."""
    if state == SUCCEEDED:
        return tx("succeeded")
    if state == FAILED:
        return tx("failed")
    if state == ROLLED_BACK:
        return tx("rolled back")
    if state == CANCELLED:
        return tx("cancelled")
    return state


class DeployService:
    """Deploys of the configured ``apps``. Call ``start()`` on the IOLoop before serving;
    ``close()`` cancels running deploys (their drivers roll back) and stops the workers.

    ``cleanup_interval`` (seconds) paces the retry of pending container cleanups.
    """

    def __init__(self, db: Database, bus: LiveBus, audit: AuditService, apps: dict[str, AppDefinition],
                 clock: Callable[[], float] = time.time,
                 driver_factory: Callable[[AppDefinition], DeployDriver] = default_driver,
                 workers: int = 8, cleanup_interval: float = 30.0, canary: CanaryAnalysis | None = None) -> None:
        self.db = db
        self.canary = canary  # runs the analysis of apps with a canary stage
        self.bus = bus
        self.audit = audit
        self.apps = apps
        self.lanes = lanes_of(apps)  # one queue per app, or per environment of an app
        self.approvals = ApprovalDesk(audit, clock)
        self._expiry_wakeup = asyncio.Event()
        self._expiry_task: asyncio.Task | None = None
        self._clock = clock
        self._driver_factory = driver_factory
        self._drivers: dict[str, DeployDriver] = {}
        self._executor = ThreadPoolExecutor(workers, thread_name_prefix="deploy")
        self._runners: dict[str, asyncio.Task] = {}
        self._wakeups: set[str] = set()
        self._cancels: dict[int, CancelToken] = {}
        self._loop: asyncio.AbstractEventLoop | None = None
        self._cleanup_task: asyncio.Task | None = None
        self._cleanup_interval = cleanup_interval
        # This process's name as a deploy's runner: host, pid and a random part (pids repeat
        # across restarts and containers).
        self.runner = f"{socket.gethostname()[:80]}:{os.getpid()}:{secrets.token_hex(4)}"
        self._lease_task: asyncio.Task | None = None

    # -- lifecycle -------------------------------------------------------------------------
    def start(self) -> None:
        """Mark deploys a previous process left running as failed, resume queued ones and
        start the cleanup task. Must be called on the running IOLoop's thread."""
        self._loop = asyncio.get_running_loop()
        interrupted = self.db.run(self._take_over, RESTARTED, self.db.run(self._dead_local_runners))
        if interrupted:
            log.warning("marked %d deploy(s) left running by a previous console as failed", len(interrupted))
        for app in self.db.run(self._apps_with_queued):
            self._kick(app)
        self._cleanup_task = self._loop.create_task(self._cleanup_loop())
        self._expiry_task = self._loop.create_task(self._expiry_loop())
        self._lease_task = self._loop.create_task(self._takeover_loop())

    def close(self) -> None:
        for token in list(self._cancels.values()):
            token.cancel(CANCELLED, tx("the console is shutting down"))
        for task in (self._cleanup_task, self._expiry_task, self._lease_task):
            if task is not None and self._loop is not None and not self._loop.is_closed():
                self._loop.call_soon_threadsafe(task.cancel)
        self._executor.shutdown(wait=True, cancel_futures=True)

    def _dead_local_runners(self, session: Session) -> builtins.list[str]:
        """Runners of running deploys that were processes of this host and are gone (or
        were this process's pid before a restart, as in a container): at start, their
        deploys need not wait for the lease to lapse."""
        host = socket.gethostname()[:80]
        dead = []
        runners = session.execute(select(Deploy.runner).where(Deploy.state == RUNNING).distinct()).scalars()
        for runner in filter(None, runners):
            name, _, rest = runner.partition(":")
            pid = rest.partition(":")[0]
            if name != host or not pid.isdigit() or runner == self.runner:
                continue
            if int(pid) == os.getpid():
                dead.append(runner)
                continue
            try:
                os.kill(int(pid), 0)  # signal 0: only whether the process exists
            except ProcessLookupError:
                dead.append(runner)
            except PermissionError:  # another user's process: alive
                pass
        return dead

    def _take_over(self, session: Session, reason: str, runners: builtins.list[str] | None = None
                   ) -> builtins.list[tuple[str, dict]]:
        """End as failed (``reason``, cleanup pending) the running deploys whose lease lapsed,
        that have none (left by a console of a version without leases) or whose runner is one
        of ``runners`` (known dead). Each row is ended by a conditional UPDATE, so of several
        consoles looking at once one ends it. Returns ``(lane key, state event)`` of each
        deploy ended here."""
        now = self._clock()
        gone = [Deploy.lease_until.is_(None), Deploy.lease_until < now]
        if runners:
            gone.append(Deploy.runner.in_(runners))
        lapsed = (Deploy.state == RUNNING, or_(*gone))
        ended = []
        for d in session.execute(select(Deploy).where(*lapsed)).scalars().all():
            done = execute_dml(session, update(Deploy).where(Deploy.id == d.id, *lapsed)
                               .values(state=FAILED, finished_at=now, cleanup_pending=True, error=reason,
                                       lease_until=None)
                               .execution_options(synchronize_session=False))
            if done.rowcount != 1:  # another console ended it first
                continue
            if d.runner:
                log.warning("deploy %s: its runner %s stopped renewing its lease; ended as failed", d.id, d.runner)
            event = self._add_event(session, d.id, "state", Text(reason), level="error", data={"state": FAILED})
            session.execute(update(DeployStep).where(DeployStep.deploy_id == d.id, DeployStep.state == RUNNING)
                            .values(state=FAILED, finished_at=now))
            ended.append((lane_key(d.app, d.environment), self._event_public(event)))
        return ended

    async def _takeover_loop(self) -> None:
        """Every TAKEOVER_POLL_S: take over the deploys of consoles that died (their
        containers are recovered here) and run queued deploys nobody runs (a console that
        accepted them died before it could)."""
        while True:
            await asyncio.sleep(TAKEOVER_POLL_S)
            try:
                for key, event in await self.db.write(self._take_over, STOPPED):
                    self.bus.publish(f"deploy:{event['deploy_id']}", event)
                    if key in self.lanes and (key not in self._runners or self._runners[key].done()):
                        await self._recover_app(key)
                for key in await self.db.read(self._apps_with_queued, self._clock() - TAKEOVER_POLL_S):
                    self._kick(key)
            except asyncio.CancelledError:
                raise
            except Exception:  # the loop must survive a bad round (database briefly down)
                log.exception("deploy lease round failed")

    def _renew(self, session: Session, deploy_id: int) -> tuple[bool, str | None]:
        """Extend this console's lease on ``deploy_id``: ``(held, cancel request)``; held
        is False when the deploy is no longer ours."""
        done = execute_dml(session, update(Deploy).where(Deploy.id == deploy_id, Deploy.state == RUNNING,
                                                         Deploy.runner == self.runner)
                           .values(lease_until=self._clock() + LEASE_S)
                           .execution_options(synchronize_session=False))
        if done.rowcount != 1:
            return False, None
        return True, session.execute(select(Deploy.cancel_requested).where(Deploy.id == deploy_id)).scalar()

    async def _hold_lease(self, deploy_id: int, token: CancelToken) -> None:
        """Renew the lease of a deploy this console runs until cancelled; pass on a cancel
        request made through another console; stop the driver when the lease is lost
        (another console ended the deploy)."""
        held_until = self._clock() + LEASE_S
        while True:
            await asyncio.sleep(RENEW_S)
            try:
                held, cancel = await self.db.write(self._renew, deploy_id)
                if not held:
                    break
                held_until = self._clock() + LEASE_S
                if cancel:
                    token.cancel(CANCELLED, cancel)
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # database briefly down: try again while the lease holds
                log.warning("deploy %s: cannot renew its lease: %s", deploy_id, exc)
                if self._clock() >= held_until:
                    break
        log.error("deploy %s: %s", deploy_id, LEASE_LOST)
        token.cancel(FAILED, Text(LEASE_LOST))

    def _apps_with_queued(self, session: Session, before: float | None = None) -> list[str]:
        """Lanes with queued deploys (created before ``before``, Unix seconds, if given)."""
        stmt = select(Deploy.app, Deploy.environment).where(Deploy.state == QUEUED)
        if before is not None:  # the console that accepted a deploy claims it first
            stmt = stmt.where(Deploy.created_at < before)
        found = session.execute(stmt.distinct())
        return [key for app, env in found if (key := lane_key(app, env)) in self.lanes]

    @staticmethod
    def _of(lane: Lane) -> tuple:
        """The where clauses of a lane's deploys."""
        env = Deploy.environment.is_(None) if lane.environment is None else Deploy.environment == lane.environment
        return Deploy.app == lane.app, env

    # -- requests ----------------------------------------------------------------------------
    def app(self, name: Any) -> AppDefinition:
        """The app called ``name``; Unprocessable (422) when malformed, NotFound (404) when unknown."""
        if not valid_app_name(name):
            raise Unprocessable(tx("app names are lower-case letters, digits, - and _ "
                                   "(at most 63 characters)"), {"app": str(name)[:100]}, code="invalid_app")
        app = self.apps.get(name)
        if app is None:
            raise NotFound(tx("no app called {app}", app=repr(name)), {"apps": sorted(self.apps)}, code="unknown_app")
        return app

    def lane(self, app_name: Any, environment: Any = None) -> Lane:
        """The lane of ``app_name`` (and its ``environment``): 422 ``environment_required``
        when the app has environments and none is named, ``unknown_environment`` when it has
        no such environment (or none at all), 404 for an unknown app."""
        app = self.app(app_name)
        envs = sorted(app.environments)
        if environment is None:
            if envs:
                raise Unprocessable(tx("{app} has environments; name one", app=app.name), {"environments": envs},
                                    code="environment_required")
            return self.lanes[app.name]
        if environment not in app.environments:
            raise Unprocessable(tx("{app} has no environment {environment}", app=app.name,
                                   environment=repr(str(environment)[:64])), {"environments": envs},
                                code="unknown_environment")
        return self.lanes[lane_key(app.name, environment)]

    def check_version(self, app: AppDefinition, version: Any, field: str = "version") -> str:
        if not valid_version(version):
            raise Unprocessable(tx("{field} must be an image tag (letters, digits, '.', '_', '-'; at most "
                                   "128 characters, not starting with '.' or '-') or sha256:<64 hex>", field=field),
                                {field: str(version)[:200]}, code="invalid_version")
        try:
            image = getattr(app.target, "image", None)
            if image:  # docker and kubernetes: the version is an image tag
                image_reference(image, version)
        except ValueError as exc:
            raise Unprocessable(str(exc), code="invalid_image") from None
        return version

    @staticmethod
    def check_reason(reason: Any) -> str:
        if reason is None:
            return ""
        if not isinstance(reason, str) or len(reason) > MAX_REASON:
            raise Unprocessable(tx("reason must be a string of at most {most} characters", most=MAX_REASON),
                                code="invalid_reason")
        return reason

    async def create(self, app_name: Any, version: Any, actor: str, source: str, reason: Any = "",
                     environment: Any = None, identity: str | None = None, force: bool = False) -> dict:
        """Request a deploy of ``version`` (to ``environment`` of an app that has them);
        returns the deploy (state ``queued``, or ``awaiting_approval`` for a protected app or
        environment). ``force`` (ssh apps only, else 422 ``invalid_force``): build the release
        again on every host. Raises Unprocessable (422) for bad input, NotFound (404) for an
        unknown app, Conflict (409) when another deploy is active (unless the app's
        ``on_conflict`` is ``queue``). Audited as ``deploy.create``. ``identity``: the
        requester for the four-eyes rule (approvals.identity_of; default ``actor``)."""
        lane = self.lane(app_name, environment)
        app = lane.definition
        version = self.check_version(app, version)
        reason = self.check_reason(reason)
        if force and app.driver != "ssh":
            raise Unprocessable(tx("force rebuilds SSH releases; {app} uses the {driver} driver", app=lane.app,
                                   driver=app.driver),
                                {"driver": app.driver}, code="invalid_force")
        row = await self.db.write(self._insert, lane, version, "deploy", actor, source, reason, identity, force)
        self._after_insert(lane, row)
        return row

    async def rollback(self, app_name: Any, to: Any, actor: str, source: str, reason: Any = "",
                       environment: Any = None, identity: str | None = None) -> dict:
        """Deploy an earlier successful version: ``to``, or else the last successful one that
        differs from the current release. 409 when there is nothing to go back to, 422 when
        ``to`` never succeeded. Audited as ``deploy.rollback``."""
        lane = self.lane(app_name, environment)
        if to is not None:
            self.check_version(lane.definition, to, "to")
        reason = self.check_reason(reason)
        row = await self.db.write(self._insert, lane, to, "rollback", actor, source, reason, identity)
        self._after_insert(lane, row)
        return row

    async def promote(self, app_name: Any, source_env: Any, target_env: Any, actor: str, source: str,
                      reason: Any = "", identity: str | None = None) -> dict:
        """Deploy to ``target_env`` the version that runs in ``source_env`` now (its last
        succeeded deploy). 422 for unknown environments or the same one twice, 409 when
        ``source_env`` has no successful deploy. Audited as ``deploy.promote``."""
        origin, lane = self.lane(app_name, source_env), self.lane(app_name, target_env)
        if origin.key == lane.key:
            raise Unprocessable(tx("promote from one environment to another"), code="same_environment")
        reason = self.check_reason(reason)
        row = await self.db.write(self._promote, origin, lane, actor, source, reason, identity)
        self._after_insert(lane, row)
        return row

    def _promote(self, session: Session, origin: Lane, lane: Lane, actor: str, source: str, reason: str,
                 identity: str | None) -> dict:
        running = self._current(session, origin)
        if running is None:
            raise Conflict(tx("{lane} has no successful deploy to promote", lane=origin.describe()), code="nothing_to_promote")
        reason = reason or f"promoted from {origin.environment} (deploy {running.id})"
        return self._insert(session, lane, running.version, "promote", actor, source, reason, identity)

    def _after_insert(self, lane: Lane, row: dict) -> None:
        if row["state"] == AWAITING:
            self._expiry_wakeup.set()
        else:
            self._kick(lane.key)

    def _insert(self, session: Session, lane: Lane, version: str | None, kind: str, actor: str,
                source: str, reason: str, identity: str | None = None, force: bool = False) -> dict:
        app = lane.definition
        current = self._current(session, lane)
        if kind == "rollback":
            if current is None:
                raise Conflict(tx("{lane} has no successful deploy yet", lane=lane.describe()), code="nothing_to_roll_back")
            version = self._rollback_target(session, lane, current, version)
            reason = reason or f"rollback from {current.version}"
        active = session.execute(select(Deploy).where(*self._of(lane), Deploy.state.in_(ACTIVE_STATES))
                                 .order_by(Deploy.id)).scalars().first()
        if active is not None and app.on_conflict == "reject":
            raise Conflict(tx("deploy {id} of {app} ({version}) is {state}; wait for it to finish or cancel it",
                              id=active.id, app=app.name, version=active.version, state=active.state),
                           {"active_deploy": active.id, "state": active.state}, code="deploy_in_progress")
        now = self._clock()
        approval = lane.approval
        d = Deploy(app=lane.app, environment=lane.environment, version=version,
                   previous_version=current.version if current else None, kind=kind,
                   state=AWAITING if approval else QUEUED, requested_by=actor, source=source, reason=reason,
                   created_at=now, timeout_s=app.timeout, cleanup_pending=False, force=force)
        session.add(d)
        session.flush()
        self.audit.record(session, actor, f"deploy.{'create' if kind == 'deploy' else kind}",
                          f"app:{lane.app}", {"deploy_id": d.id, "version": version, "environment": lane.environment,
                                              "previous_version": d.previous_version, "reason": reason,
                                              **({"force": True} if force else {})},
                          source)
        if active is not None:
            requested = tx("{kind} of {lane} {version} requested by {actor} behind deploy {id}", kind=kind_text(kind),
                           lane=lane.describe(), version=version, actor=actor, id=active.id)
        else:
            requested = tx("{kind} of {lane} {version} requested by {actor}", kind=kind_text(kind),
                           lane=lane.describe(), version=version, actor=actor)
        self._add_event(session, d.id, "state", requested, data={"state": QUEUED})
        if approval:
            self.approvals.request(session, d, approval, identity or actor, source)
            self._add_event(session, d.id, "state", tx(
                "awaiting approval by another user with the {role} role (expires in {timeout} s)",
                role=approval.approver_role, timeout=f"{approval.timeout:g}"), data={"state": AWAITING})
        out = self._public(d)
        self.approvals.attach(session, [out])
        return out

    def _current(self, session: Session, lane: Lane) -> Deploy | None:
        """The lane's last succeeded deploy: the release that serves now."""
        return session.execute(select(Deploy).where(*self._of(lane), Deploy.state == SUCCEEDED)
                               .order_by(Deploy.id.desc()).limit(1)).scalars().first()

    def _rollback_target(self, session: Session, lane: Lane, current: Deploy, to: str | None) -> str:
        app = lane.describe()
        versions = list(dict.fromkeys(session.execute(
            select(Deploy.version).where(*self._of(lane), Deploy.state == SUCCEEDED)
            .order_by(Deploy.id.desc())).scalars()))
        if to is None:
            earlier = [v for v in versions if v != current.version]
            if not earlier:
                raise Conflict(tx("{app} has no successful version other than {version}", app=app, version=current.version),
                               code="nothing_to_roll_back")
            return earlier[0]
        if to == current.version:
            raise Conflict(tx("{version} is the current version of {app}", version=to, app=app), code="already_current")
        if to not in versions:
            raise Unprocessable(tx("{app} never ran {version} successfully", app=app, version=to), {"versions": versions[:50]},
                                code="unknown_version")
        return to

    async def cancel(self, deploy_id: int, actor: str, source: str) -> dict:
        """Cancel a queued deploy at once, or ask a running one to stop and roll back.
        404 unknown, 409 already finished. Audited as ``deploy.cancel``."""
        row, event = await self.db.write(self._cancel, deploy_id, actor, source)
        token = self._cancels.get(deploy_id)
        if row["state"] == RUNNING and token is not None:
            token.cancel(CANCELLED, tx("cancelled by {actor}", actor=actor))
        self.bus.publish(f"deploy:{deploy_id}", event)
        return row

    def _cancel(self, session: Session, deploy_id: int, actor: str, source: str) -> tuple[dict, dict]:
        d = session.get(Deploy, deploy_id)
        if d is None:
            raise NotFound(tx("no deploy {id}", id=deploy_id), code="unknown_deploy")
        if d.state not in ACTIVE_STATES:
            raise Conflict(tx("deploy {id} is already {state}", id=deploy_id, state=d.state), code="deploy_finished")
        self.audit.record(session, actor, "deploy.cancel", f"app:{d.app}", {"deploy_id": d.id, "state": d.state},
                          source)
        if d.state != RUNNING:
            said = tx("cancelled by {actor} before it started", actor=actor)
            d.state, d.finished_at, d.error = CANCELLED, self._clock(), str(said)
            event = self._add_event(session, d.id, "state", said, level="warning", data={"state": CANCELLED})
        else:
            d.cancel_requested = f"cancelled by {actor}"  # for the console running it, when another
            event = self._add_event(session, d.id, "log", tx("cancel requested by {actor}; rolling back", actor=actor),
                                    level="warning")
        return self._public(d), self._event_public(event)

    # -- approvals (console/deploy/approvals.py) ----------------------------------------------
    async def decide(self, deploy_id: int, principal: Principal, approve: bool, source: str,
                     reason: Any = "") -> dict:
        """Approve (the deploy is queued and runs) or reject a deploy awaiting approval;
        returns the deploy. Errors as ``ApprovalDesk.decide``; 422 for a bad reason."""
        reason = self.check_reason(reason)
        row, event = await self.db.write(self._decide, deploy_id, principal, approve, reason, source)
        self.bus.publish(f"deploy:{deploy_id}", event)
        if approve:
            self._kick(lane_key(row["app"], row["environment"]))
        return row

    def _decide(self, session: Session, deploy_id: int, principal: Principal, approve: bool, reason: str,
                source: str) -> tuple[dict, dict]:
        d, said = self.approvals.decide(session, deploy_id, principal, approve, reason, source)
        event = self._add_event(session, d.id, "state", said if approve else tx("rejected: {reason}", reason=said),
                                level="info" if approve else "warning", data={"state": d.state})
        out = self._public(d)
        self.approvals.attach(session, [out])
        return out, self._event_public(event)

    async def _expiry_loop(self) -> None:
        """End approval requests whose time is up: sleep until the next one is due (or a
        new request arrives), then expire what is due."""
        while True:
            try:
                for event in await self.db.write(self._expire_due):
                    self.bus.publish(f"deploy:{event['deploy_id']}", event)
                due = await self.db.read(self.approvals.next_expiry)
                wait = 60.0 if due is None else min(60.0, max(0.05, due - self._clock()))
                self._expiry_wakeup.clear()
                try:
                    await asyncio.wait_for(self._expiry_wakeup.wait(), wait)
                except asyncio.TimeoutError:
                    pass
            except asyncio.CancelledError:
                raise
            except Exception:  # the loop must survive a bad round (database briefly down)
                log.exception("approval expiry round failed")
                await asyncio.sleep(5.0)

    def _expire_due(self, session: Session) -> builtins.list[dict]:
        return [self._event_public(self._add_event(session, d.id, "state", tx("expired: {reason}", reason=expired),
                                                   level="warning",
                                                   data={"state": EXPIRED}))
                for d, expired in self.approvals.expire_due(session)]

    async def audit_denied(self, actor: str, action: str, app: str, source: str, details: dict) -> None:
        """Record a refused (403) deploy action: ``action`` (``deploy.create``, ...) on
        ``app:APP`` with ``outcome: denied`` (its own transaction: the refusal rolled back
        the request's)."""
        await self.db.write(self._audit_denied, actor, action, app, source, details)

    def _audit_denied(self, session: Session, actor: str, action: str, app: str, source: str,
                      details: dict) -> AuditEntry:
        return self._audit(session, actor, action, f"app:{app[:64]}", {**details, "outcome": "denied"}, source)

    async def audit_denied_reload(self, actor: str, source: str, details: dict) -> None:
        """Record a refused (403) apps reload: ``apps.reload`` on ``apps`` with ``outcome:
        denied``, beside the ``applied`` and ``refused`` ones of reload_apps."""
        await self.db.write(self._audit, actor, "apps.reload", "apps", {**details, "outcome": "denied"}, source)

    # -- apps reload (console/deploy/reload.py) ----------------------------------------------
    async def reload_apps(self, read: Callable[[], dict[str, AppDefinition]], actor: str, source: str) -> dict:
        """Replace the apps with ``read()`` (blocking; raises ConfigError): returns
        ``{"added", "removed", "changed", "unchanged"}`` app names. Unprocessable (422
        ``apps_refused``, ``details.errors``: one line per problem) when ``read`` refuses;
        the apps stay. Audited as ``apps.reload`` (``outcome``: ``applied`` or ``refused``).
        A running deploy keeps its definition and driver; queued ones run with the new one."""
        try:
            apps = await asyncio.get_running_loop().run_in_executor(self._executor, read)
        except ConfigError as exc:
            lines = text_lines(message_of(exc))
            errors = [str(line) for line in lines]  # the audit and details keep the English
            await self.db.write(self._audit, actor, "apps.reload", "apps",
                                {"outcome": "refused", "errors": errors[:50]}, source)
            log.error("apps reload refused (the apps in use stay): %s", exc)
            raise Unprocessable(tx("the apps were not reloaded: {problems}", problems=TextLines(lines[:5], list_separator())),
                                {"errors": errors}, code="apps_refused") from None
        old = self.apps
        changes = {"added": sorted(set(apps) - set(old)), "removed": sorted(set(old) - set(apps)),
                   "changed": sorted(n for n in apps if n in old and apps[n] != old[n]),
                   "unchanged": sorted(n for n in apps if n in old and apps[n] == old[n])}
        lanes = lanes_of(apps)
        for key, lane in self.lanes.items():
            if lanes.get(key) != lane:
                self._drivers.pop(key, None)  # a running deploy holds its own reference
        self.apps, self.lanes = apps, lanes
        await self.db.write(self._audit, actor, "apps.reload", "apps", {"outcome": "applied", **changes}, source)
        for key in await self.db.read(self._apps_with_queued):
            self._kick(key)
        return changes

    def _audit(self, session: Session, actor: str, action: str, target: str, details: dict,
               source: str) -> AuditEntry:
        return self.audit.record(session, actor, action, target, details, source)

    # -- reads -------------------------------------------------------------------------------
    async def get(self, deploy_id: int) -> dict:
        """``{"id", "app", "version", ..., "steps": [...]}``; NotFound (404)."""
        return await self.db.read(self._get, deploy_id)

    def _get(self, session: Session, deploy_id: int) -> dict:
        d = session.get(Deploy, deploy_id)
        if d is None:
            raise NotFound(tx("no deploy {id}", id=deploy_id), code="unknown_deploy")
        steps = session.execute(select(DeployStep).where(DeployStep.deploy_id == deploy_id)
                                .order_by(DeployStep.position)).scalars()
        out = self._public(d)
        self.approvals.attach(session, [out])
        # A step's message is its last step event's: that event's template translates it.
        step_texts: dict[str | None, tuple[str, object]] = {}
        for name, message, data in session.execute(
                select(DeployEvent.step, DeployEvent.message, DeployEvent.data)
                .where(DeployEvent.deploy_id == deploy_id, DeployEvent.kind == "step").order_by(DeployEvent.seq)):
            step_texts[name] = (message, orjson.loads(data).get("i18n"))
        out["steps"] = []
        for s in steps:
            said, text = step_texts.get(s.name, (None, None))
            out["steps"].append({"name": s.name, "state": s.state, "message": s.message, "started_at": s.started_at,
                                 "finished_at": s.finished_at, **({"i18n": text} if said == s.message and text else {})})
        canary_events = session.execute(
            select(DeployEvent.kind, DeployEvent.step, DeployEvent.message, DeployEvent.data)
            .where(DeployEvent.deploy_id == deploy_id, (DeployEvent.kind == "analysis") | (DeployEvent.step == "canary"))
            .order_by(DeployEvent.seq)).all()
        if d.error:
            last_state = session.execute(
                select(DeployEvent.data).where(DeployEvent.deploy_id == deploy_id, DeployEvent.kind == "state")
                .order_by(DeployEvent.seq.desc()).limit(1)).scalar_one_or_none()
            error_text = _text_saying(orjson.loads(last_state).get("i18n") if last_state else None, d.error)
            if error_text is not None:
                out["error_i18n"] = error_text
        out["analysis"], out["canary"] = analysis_of((k, st, m, orjson.loads(data)) for k, st, m, data in canary_events)
        return out

    async def events(self, deploy_id: int, after: int = 0, limit: int = 1000) -> dict:
        """Events with ``seq > after``, oldest first: ``{"deploy_id", "state", "finished",
        "events": [{"seq", "ts", "kind", "level", "step", "message", "data"}], "last_seq"}``."""
        return await self.db.read(self._events, deploy_id, after, limit)

    def _events(self, session: Session, deploy_id: int, after: int, limit: int) -> dict:
        d = session.get(Deploy, deploy_id)
        if d is None:
            raise NotFound(tx("no deploy {id}", id=deploy_id), code="unknown_deploy")
        rows = session.execute(select(DeployEvent).where(DeployEvent.deploy_id == deploy_id, DeployEvent.seq > after)
                               .order_by(DeployEvent.seq).limit(limit)).scalars().all()
        events = [self._event_public(e) for e in rows]
        return {"deploy_id": deploy_id, "state": d.state, "finished": d.state in FINAL_STATES,
                "events": events, "last_seq": events[-1]["seq"] if events else after}

    async def list(self, app: str | None = None, host: str | None = None, since: float | None = None,
                   until: float | None = None, limit: int = 50, before: int | None = None) -> dict:
        """Newest first: ``{"deploys": [...], "next": before-cursor or None}``. ``host``
        keeps apps that list that host; ``since``/``until`` bound ``created_at``."""
        apps: builtins.list[str] | None = None
        if app is not None:
            apps = [self.app(app).name]
        if host is not None:
            by_host = [a.name for a in self.apps.values() if host in a.hosts]
            apps = by_host if apps is None else [a for a in apps if a in by_host]
        return await self.db.read(self._list, apps, since, until, max(1, min(limit, MAX_LIST)), before)

    def _list(self, session: Session, apps: builtins.list[str] | None, since: float | None, until: float | None,
              limit: int, before: int | None) -> dict:
        stmt = select(Deploy).order_by(Deploy.id.desc()).limit(limit + 1)
        if apps is not None:
            stmt = stmt.where(Deploy.app.in_(apps))
        if since is not None:
            stmt = stmt.where(Deploy.created_at >= since)
        if until is not None:
            stmt = stmt.where(Deploy.created_at <= until)
        if before is not None:
            stmt = stmt.where(Deploy.id < before)
        rows = session.execute(stmt).scalars().all()
        more = len(rows) > limit
        rows = rows[:limit]
        deploys = [self._public(d) for d in rows]
        self.approvals.attach(session, deploys)
        return {"deploys": deploys, "next": rows[-1].id if more else None}

    async def app_summaries(self) -> builtins.list[dict]:
        """Every app's configuration summary plus ``current`` (last succeeded deploy) and
        ``active`` (queued or running deploy), each ``{"id", "version", "state", ...}`` or None."""
        return await self.db.read(self._summaries)

    def _summaries(self, session: Session) -> builtins.list[dict]:
        out = []
        for name in sorted(self.apps):
            s = self.apps[name].summary()
            for lane in self.lanes.values():
                if lane.app != name:
                    continue
                current = self._current(session, lane)
                active = session.execute(select(Deploy).where(*self._of(lane), Deploy.state.in_(ACTIVE_STATES))
                                         .order_by(Deploy.id)).scalars().first()
                shown = {"current": self._public(current) if current else None,
                         "active": self._public(active) if active else None}
                self.approvals.attach(session, shown.values())
                (s if lane.environment is None else s["environments"][lane.environment]).update(shown)
            s.setdefault("current", None)
            s.setdefault("active", None)
            out.append(s)
        return out

    async def instances(self, app_name: str) -> dict:
        """``{"instances": [...]}`` from the engine, or ``{"instances": None, "error": ...}``
        when it is unreachable."""
        app = self.app(app_name)
        found: builtins.list = []
        for lane in [lane for lane in self.lanes.values() if lane.app == app.name]:
            driver = self._driver(lane.definition)
            try:
                got = await asyncio.get_running_loop().run_in_executor(self._executor, driver.instances, lane.key)
            except DriverUnavailable as exc:
                return {"instances": None, "error": str(exc)}
            found.extend(dict(i, environment=lane.environment) if lane.environment else i for i in got)
        return {"instances": found, "error": None}

    # -- running -----------------------------------------------------------------------------
    def _driver(self, app: AppDefinition) -> DeployDriver:
        driver = self._drivers.get(app.name)
        if driver is None:
            driver = self._drivers[app.name] = self._driver_factory(app)
        return driver

    def _kick(self, app: str) -> None:
        self._wakeups.add(app)
        task = self._runners.get(app)
        if task is None or task.done():
            self._runners[app] = asyncio.get_running_loop().create_task(self._run_app(app))

    async def _run_app(self, app: str) -> None:
        """Run the app's queued deploys one after another (the per-app lock)."""
        try:
            while True:
                self._wakeups.discard(app)
                claimed = await self.db.write(self._claim_next, app)
                if claimed is None:
                    if app in self._wakeups:  # a request arrived while we looked
                        continue
                    return
                self.bus.publish(f"deploy:{claimed['id']}", claimed.pop("event"))
                await self._execute(claimed)
        finally:
            if self._runners.get(app) is asyncio.current_task():
                del self._runners[app]

    def _claim_next(self, session: Session, key: str) -> dict | None:
        lane = self.lanes.get(key)
        if lane is None:  # no longer configured (apps reload): its queued deploys wait for it
            return None
        if session.get_bind().dialect.name == "postgresql":
            # One claim at a time per lane across the consoles sharing the database: without
            # it two could each see the lane idle and start two of its deploys. Released at commit.
            session.execute(text("SELECT pg_advisory_xact_lock(hashtext(current_schema() || :lane))"),
                            {"lane": f".fleetdeck.deploy.{key}"})
        if session.execute(select(Deploy.id).where(*self._of(lane), Deploy.state == RUNNING)).first():
            return None
        d = session.execute(select(Deploy).where(*self._of(lane), Deploy.state == QUEUED)
                            .order_by(Deploy.id).limit(1)).scalars().first()
        if d is None:
            return None
        current = self._current(session, lane)
        now = self._clock()
        claimed = execute_dml(session, update(Deploy).where(Deploy.id == d.id, Deploy.state == QUEUED)
                              .values(state=RUNNING, started_at=now, runner=self.runner, lease_until=now + LEASE_S,
                                      previous_version=current.version if current else None)
                              .execution_options(synchronize_session=False))
        if claimed.rowcount != 1:  # cancelled (or claimed) meanwhile by another console
            return None
        session.refresh(d)
        event = self._add_event(session, d.id, "state", tx("running (timeout {timeout} s)", timeout=f"{d.timeout_s:g}"),
                                data={"state": RUNNING})
        out = self._public(d)
        out["event"] = self._event_public(event)
        out["current_deploy_id"] = current.id if current else None
        return out

    async def _execute(self, d: dict) -> None:
        loop = asyncio.get_running_loop()
        lane = self.lanes.get(lane_key(d["app"], d["environment"]))
        app = lane.definition if lane is not None else None  # kept for the whole deploy, whatever a reload does
        token = CancelToken()
        self._cancels[d["id"]] = token
        queue: asyncio.Queue = asyncio.Queue()

        def emit(event: DriverEvent) -> None:  # called on a driver thread
            try:
                loop.call_soon_threadsafe(queue.put_nowait, event)
            except RuntimeError:  # the loop is closed: the console is stopping
                log.info("deploy %s: %s (not stored: console stopping)", d["id"], event.message)

        consumer = loop.create_task(self._consume(d["id"], queue))
        lease = loop.create_task(self._hold_lease(d["id"], token))
        timer = loop.call_later(d["timeout_s"], token.cancel, "timeout",
                                tx("deploy timed out after {timeout} s", timeout=f"{d['timeout_s']:g}"))
        try:
            if app is None:
                outcome = DeployOutcome(FAILED, f"app {d['app']} is no longer configured")
            else:
                await self._recover_app(app.name)
                driver = self._driver(app)
                request = DeployRequest(deploy_id=d["id"], app=app.name, version=d["version"],
                                        previous_version=d["previous_version"],
                                        current_deploy_id=d["current_deploy_id"], kind=d["kind"],
                                        gate=self._gate(app, d, loop), force=d["force"])
                outcome = await loop.run_in_executor(self._executor, driver.deploy, request, emit, token)
        except Exception as exc:  # a driver bug must never leave the deploy running
            log.exception("deploy %s crashed", d["id"])
            outcome = DeployOutcome(FAILED, f"internal error: {type(exc).__name__}: {exc}", cleanup_pending=True)
        finally:
            timer.cancel()
            lease.cancel()
            queue.put_nowait(None)  # after every event the driver emitted (same loop, FIFO)
            await consumer
            self._cancels.pop(d["id"], None)
        finished = await self.db.write(self._finish, d["id"], outcome)
        if finished is not None:
            self.bus.publish(f"deploy:{d['id']}", finished)

    def _gate(self, app: AppDefinition, d: dict, loop: asyncio.AbstractEventLoop) -> CanaryGate | None:
        """The canary gate of deploy ``d`` of ``app``. None without a canary stage, for a
        rollback (back to a version that served, at once) and for the app's first release
        (nothing serves yet to compare with or to protect), as Flagger and Argo Rollouts do."""
        if app.canary is None or d["kind"] == "rollback" or d["previous_version"] is None:
            return None
        if self.canary is None:
            raise RuntimeError(f"app {app.name} has a canary but the deploy service has no analysis")
        # The app's own name (an environment's driver sees APP-ENV): alerts and queries name the app.
        params = {"app": d["app"], "version": d["version"], "previous_version": d["previous_version"],
                  "deploy_id": str(d["id"])}
        return self.canary.gate(d["app"], app.hosts, app.canary, loop, params)

    async def _consume(self, deploy_id: int, queue: asyncio.Queue) -> None:
        # Every event waiting is stored in one transaction: a driver working on many hosts
        # at once emits faster than one commit per event keeps up with.
        while True:
            batch = [await queue.get()]
            while not queue.empty():
                batch.append(queue.get_nowait())
            events = [e for e in batch if e is not None]
            if events:
                try:
                    stored = await self.db.write(self._store_driver_events, deploy_id, events)
                except Exception:  # keep the deploy going; the log lines are lost, not the deploy
                    log.exception("cannot store %d event(s) of deploy %s", len(events), deploy_id)
                    stored = []
                for row in stored:
                    self.bus.publish(f"deploy:{deploy_id}", row)
            if len(events) < len(batch):  # the None after the driver's last event
                return

    def _store_driver_events(self, session: Session, deploy_id: int, events: builtins.list[DriverEvent]
                             ) -> builtins.list[dict]:
        return [self._store_driver_event(session, deploy_id, event) for event in events]

    def _store_driver_event(self, session: Session, deploy_id: int, event: DriverEvent) -> dict:
        now = self._clock()
        if event.kind == "step" and event.step:
            step = session.execute(select(DeployStep).where(DeployStep.deploy_id == deploy_id,
                                                            DeployStep.name == event.step)).scalars().first()
            if step is None:
                position = session.execute(select(func.count()).select_from(DeployStep)
                                           .where(DeployStep.deploy_id == deploy_id)).scalar_one()
                step = DeployStep(deploy_id=deploy_id, position=position, name=event.step, state=event.state,
                                  message=event.message, started_at=now)
                session.add(step)
            step.state, step.message = event.state or step.state, event.message
            step.finished_at = None if event.state == RUNNING else now
        e = self._add_event(session, deploy_id, event.kind, event.message, level=event.level, step=event.step,
                            data=dict(event.data, **({"state": event.state} if event.state else {})))
        return self._event_public(e)

    def _finish(self, session: Session, deploy_id: int, outcome: DeployOutcome) -> dict | None:
        """Store the outcome, if this console still holds the deploy's lease (None if not:
        another console ended it)."""
        now = self._clock()
        done = execute_dml(session, update(Deploy).where(Deploy.id == deploy_id, Deploy.state == RUNNING,
                                                         Deploy.runner == self.runner)
                           .values(state=outcome.state, finished_at=now,
                                   error=None if outcome.error is None else str(outcome.error),
                                   cleanup_pending=outcome.cleanup_pending, lease_until=None)
                           .execution_options(synchronize_session=False))
        if done.rowcount != 1:
            log.warning("deploy %s ended as %s here, but another console had taken it over", deploy_id,
                        outcome.state)
            return None
        d = session.get_one(Deploy, deploy_id)
        session.execute(update(DeployStep).where(DeployStep.deploy_id == deploy_id, DeployStep.state == RUNNING)
                        .values(state=FAILED if outcome.state != SUCCEEDED else SUCCEEDED, finished_at=now))
        took = now - (d.started_at or now)
        if outcome.error:
            message = tx("{state} after {took} s: {error}", state=state_text(outcome.state), took=f"{took:.1f}",
                         error=outcome.error)
        else:
            message = tx("{state} after {took} s", state=state_text(outcome.state), took=f"{took:.1f}")
        return self._event_public(self._add_event(
            session, deploy_id, "state", message, level="info" if outcome.state == SUCCEEDED else "error",
            data={"state": outcome.state, "cleanup_pending": outcome.cleanup_pending}))

    # -- cleanup of deploys whose engine went away ------------------------------------------
    async def _cleanup_loop(self) -> None:
        while True:
            await asyncio.sleep(self._cleanup_interval)
            try:
                for app in await self.db.read(self._apps_pending_cleanup):
                    if app in self.lanes and (app not in self._runners or self._runners[app].done()):
                        await self._recover_app(app)
            except asyncio.CancelledError:
                raise
            except Exception:  # the loop must survive a bad round (database briefly down)
                log.exception("deploy cleanup round failed")

    def _apps_pending_cleanup(self, session: Session) -> builtins.list[str]:
        found = session.execute(select(Deploy.app, Deploy.environment).where(Deploy.cleanup_pending.is_(True))
                                .distinct())
        return [lane_key(app, env) for app, env in found]

    async def _recover_app(self, app: str) -> None:
        """Retry the cleanup of the app's deploys marked ``cleanup_pending``; an engine that
        is still unreachable leaves them pending."""
        lane = self.lanes.get(app)
        if lane is None:
            return
        pending = await self.db.read(self._pending_of, lane)
        driver = self._driver(lane.definition)
        loop = asyncio.get_running_loop()
        for deploy_id, current_id in pending:
            events: builtins.list[DriverEvent] = []
            try:
                removed = await loop.run_in_executor(self._executor, driver.recover, app, deploy_id, current_id,
                                                     events.append)
            except DriverUnavailable as exc:
                log.info("cleanup of deploy %s still pending: %s", deploy_id, exc)
                return
            events.append(DriverEvent("log", tx("cleanup done: removed {count} container(s) of this deploy",
                                                count=removed)))
            stored = await self.db.write(self._cleaned, deploy_id, events)
            for e in stored:
                self.bus.publish(f"deploy:{deploy_id}", e)

    def _pending_of(self, session: Session, lane: Lane) -> builtins.list[tuple[int, int | None]]:
        current = self._current(session, lane)
        ids = session.execute(select(Deploy.id).where(*self._of(lane), Deploy.cleanup_pending.is_(True))
                              .order_by(Deploy.id)).scalars()
        return [(i, current.id if current else None) for i in ids]

    def _cleaned(self, session: Session, deploy_id: int, events: builtins.list[DriverEvent]) -> builtins.list[dict]:
        d = session.get_one(Deploy, deploy_id)
        d.cleanup_pending = False
        return [self._event_public(self._add_event(session, deploy_id, e.kind, e.message, level=e.level,
                                                   data=e.data)) for e in events]

    # -- rows --------------------------------------------------------------------------------
    def _add_event(self, session: Session, deploy_id: int, kind: str, message: str, level: str = "info",
                   step: str | None = None, data: dict | None = None) -> DeployEvent:
        seq = session.execute(select(func.coalesce(func.max(DeployEvent.seq), 0))
                              .where(DeployEvent.deploy_id == deploy_id)).scalar_one() + 1
        data = dict(data or {})
        if isinstance(message, Text):
            # The English text in ``message`` (CLI, audit, older readers); the template and its
            # values let the API and the live log show it in the reader's language.
            data["i18n"] = text_data(message)
        e = DeployEvent(deploy_id=deploy_id, seq=seq, ts=self._clock(), kind=kind, level=level, step=step,
                        message=message[:4000], data=_json(data))
        session.add(e)
        session.flush()
        return e

    @staticmethod
    def _event_public(e: DeployEvent) -> dict:
        return {"deploy_id": e.deploy_id, "seq": e.seq, "ts": e.ts, "kind": e.kind, "level": e.level,
                "step": e.step, "message": e.message, "data": orjson.loads(e.data)}

    @staticmethod
    def _public(d: Deploy) -> dict:
        duration = (d.finished_at - d.started_at) if d.finished_at and d.started_at else None
        return {"id": d.id, "app": d.app, "environment": d.environment, "version": d.version, "previous_version": d.previous_version,
                "kind": d.kind, "state": d.state, "requested_by": d.requested_by, "reason": d.reason,
                "error": d.error, "created_at": d.created_at, "started_at": d.started_at,
                "finished_at": d.finished_at, "duration_s": duration, "timeout_s": d.timeout_s,
                "cleanup_pending": d.cleanup_pending, "force": bool(d.force)}
