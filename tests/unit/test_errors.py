"""The error trees (console/errors.py, agents/errors.py): each domain error carries the
HTTP status and JSON code clients have always seen, survives pickling (errors cross
process pools and logging queues) and prints its message."""

from __future__ import annotations

import pickle

import pytest

from agents.client import PushError
from agents.config import ConfigError as AgentConfigError
from agents.errors import AgentError
from agents.yamlfile import YamlFileError
from console.auth.passwords import PasswordsBusy
from console.auth.tokens import EnrolError, TokenError, TokenNotFound
from console.auth.users import AppsNeedDeployer, LastAdmin, UserError, UserExists, UserNotFound
from console.config import ConfigError
from console.deploy.drivers.base import DriverUnavailable
from console.deploy.drivers.docker import DockerDriverError
from console.errors import ApiError, Conflict, FleetdeckError, InvalidInput, NotFound, Unavailable
from console.fleet.retire import HostNotFound
from console.ingest.batch import IngestError
from console.ingest.service import IngestRejected
from console.logs.service import LogQueryError
from console.secrets import SecretError

# (error, status, code, details) as the API has answered them (tests/api assert the codes).
CASES = [
    (UserError("bad name"), 400, "invalid_user", {}),
    (UserExists("taken"), 409, "user_exists", {}),
    (UserNotFound("no such user"), 404, "user_not_found", {}),
    (LastAdmin("keep one"), 409, "last_admin", {}),
    (AppsNeedDeployer("viewer with apps"), 409, "apps_need_deployer", {}),
    (TokenError("bad role"), 400, "invalid_token_request", {}),
    (TokenError("bad host", code="invalid_host"), 400, "invalid_host", {}),
    (TokenNotFound("no token 7"), 404, "token_not_found", {}),
    (EnrolError("refused"), 403, "enrolment_refused", {}),
    (SecretError("invalid_name", "bad name"), 400, "secret_invalid_name", {}),
    (SecretError("not_found", "no secret"), 404, "secret_not_found", {}),
    (SecretError("kubeconfig_refused", "exec plugin", "users[0].user.exec"), 422, "secret_kubeconfig_refused",
     {"field": "users[0].user.exec"}),
    (LogQueryError("limit", "limit must be an integer"), 400, "invalid_parameter", {"parameter": "limit"}),
    (LogQueryError("end", "end is before start", "invalid_range"), 422, "invalid_range", {"parameter": "end"}),
    (IngestRejected({"too_old": 2}, {"too_old": "cpu @ 1"}), 400, "samples_rejected",
     {"rejected": {"too_old": 2}, "examples": {"too_old": "cpu @ 1"}}),
    (IngestError(415, "unsupported_encoding", "br is not supported"), 415, "unsupported_encoding", {}),
    (HostNotFound("no host named 'x'"), 404, "host_not_found", {}),
    (PasswordsBusy(3), 503, "busy", {"waiting": 3}),
    (ConfigError("console.listen: bad", ("listen",)), 400, "invalid_config", {"keys": ["listen"]}),
    (DriverUnavailable("the Docker engine cannot be reached"), 503, "driver_unavailable", {}),
    (DockerDriverError("image web:9 not found in its registry"), 502, "driver_failed", {}),
]


@pytest.mark.parametrize("exc,status,code,details", CASES, ids=[type(c[0]).__name__ + ":" + c[2] for c in CASES])
def test_domain_errors_carry_their_answer(exc, status, code, details):
    assert isinstance(exc, FleetdeckError)
    assert (exc.status, exc.code, exc.details) == (status, code, details)
    assert str(exc) == exc.message


@pytest.mark.parametrize("exc,status,code,details", CASES, ids=[type(c[0]).__name__ + ":" + c[2] for c in CASES])
def test_domain_errors_survive_pickling(exc, status, code, details):
    copy = pickle.loads(pickle.dumps(exc))
    assert type(copy) is type(exc)
    assert (copy.status, copy.code, copy.details, str(copy)) == (status, code, details, str(exc))


def test_api_error_with_explicit_status_survives_pickling():
    exc = ApiError(429, "too_many_requests", "retry in 3 s", {"retry_after": 3}, headers={"Retry-After": "3"})
    copy = pickle.loads(pickle.dumps(exc))
    assert (copy.status, copy.code, copy.message, copy.details, copy.headers) == (
        429, "too_many_requests", "retry in 3 s", {"retry_after": 3}, {"Retry-After": "3"})
    assert PasswordsBusy(1).headers == {"Retry-After": "1"}


def test_the_builtin_bases_callers_catch_are_kept():
    # Code that caught ValueError / LookupError before the tree keeps working.
    assert isinstance(UserExists("x"), (ValueError, UserError, Conflict))
    assert isinstance(InvalidInput("x"), ValueError) and isinstance(ConfigError("x"), ValueError)
    assert isinstance(HostNotFound("x"), LookupError) and isinstance(NotFound("x"), LookupError)
    assert not isinstance(Unavailable("x"), ValueError)


def test_agent_errors_share_their_base_and_pickle():
    push = PushError(503, "ingest_saturated", "busy", retry_after=2.0)
    for exc in (push, AgentConfigError("interval (from env) must be positive"), YamlFileError("agent.yaml: bad")):
        assert isinstance(exc, AgentError)
        copy = pickle.loads(pickle.dumps(exc))
        assert type(copy) is type(exc) and str(copy) == str(exc)
    copy = pickle.loads(pickle.dumps(push))
    assert (copy.status, copy.code, copy.message, copy.retry_after) == (503, "ingest_saturated", "busy", 2.0)
    assert str(push) == "503 ingest_saturated: busy"
    assert isinstance(AgentConfigError("x"), ValueError)
