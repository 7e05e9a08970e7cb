"""Units of the hardening: the login redirect target, and the agent's own name checks
(the same rules as the console's, so a trailing newline never passes either)."""
from __future__ import annotations

import pytest

from agents.agent import _invalid_reason
from agents.config import AgentConfig, ConfigError, validate
from collectors.base import Sample
from console.ui.handlers import safe_next


@pytest.mark.parametrize("target", [
    "/", "/hosts/web-1", "/logs?q=error&host=a", "/deploys/12#events", "/hosts/a%2Fb", "/%09/evil.example/phish",
])
def test_safe_next_keeps_paths_of_this_console(target):
    assert safe_next(target) == target


@pytest.mark.parametrize("target", [
    None, "", "hosts", "//evil.example", "///evil.example", "/\t/evil.example/phish", "/\n/evil.example",
    "/\r\n/evil.example", "\t//evil.example", " /x", "/\\evil.example", "\\\\evil.example", "/\x00/x",
    "/\x7f/x", "http://evil.example/", "https:/evil.example", "javascript:alert(1)", "/\u2028/x",
    "/caf\u00e9", "/a b",
])
def test_safe_next_refuses_other_hosts_controls_and_backslashes(target):
    assert safe_next(target) == "/"


def test_agent_name_checks_refuse_a_trailing_newline():
    assert _invalid_reason(Sample("node_load1", {"job": "x"}, 1.0)) is None
    assert _invalid_reason(Sample("node_load1\n", {}, 1.0)) is not None
    assert _invalid_reason(Sample("node_load1", {"job\n": "x"}, 1.0)) is not None
    validate(AgentConfig(host="host-a"))
    with pytest.raises(ConfigError):
        validate(AgentConfig(host="host-a\n"))
