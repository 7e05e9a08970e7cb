"""Drift: the agent's config hash and the fleet baseline the console compares against."""
from __future__ import annotations

from agents.config import AgentConfig, config_hash
from console.fleet.drift import baseline, mark_drift


def test_config_hash_ignores_host_and_token_but_not_behaviour():
    base = AgentConfig(console_url="http://c:8700", host="web-1", token="t1", interval=10)
    same = AgentConfig(console_url="http://c:8700", host="web-2", token="t2", interval=10)
    slower = AgentConfig(console_url="http://c:8700", host="web-1", token="t1", interval=30)
    labelled = AgentConfig(console_url="http://c:8700", host="web-1", token="t1", interval=10,
                           labels={"env": "prod"})
    assert config_hash(base) == config_hash(same)
    assert len(config_hash(base)) == 16 and int(config_hash(base), 16) >= 0
    assert len({config_hash(base), config_hash(slower), config_hash(labelled)}) == 3


def test_baseline_is_the_unique_most_common_value():
    assert baseline(["a", "a", "b", None]) == "a"
    assert baseline(["a", "b"]) is None  # a tie: no side is the odd one out
    assert baseline([None, ""]) is None


def test_mark_drift_flags_the_odd_hosts_only():
    hosts = [{"host": "a", "agent_version": "0.1.0", "config_hash": "h1"},
             {"host": "b", "agent_version": "0.1.0", "config_hash": "h1"},
             {"host": "c", "agent_version": "0.2.0", "config_hash": "h1"},
             {"host": "d", "agent_version": "0.1.0", "config_hash": "h2"},
             {"host": "e", "agent_version": None, "config_hash": None}]
    baselines = mark_drift(hosts)
    assert baselines == {None: {"agent_version": "0.1.0", "config_hash": "h1"}}
    assert [(h["host"], h["drift"], h["drift_fields"]) for h in hosts] == [
        ("a", False, []), ("b", False, []), ("c", True, ["agent_version"]),
        ("d", True, ["config_hash"]), ("e", False, [])]


def test_a_tie_flags_no_host_and_a_uniform_fleet_none():
    # Two agents with two configurations: neither is the odd one out (it used to flag both).
    split = [{"agent_version": "1", "config_hash": "x"}, {"agent_version": "2", "config_hash": "x"}]
    mark_drift(split)
    assert [h["drift_fields"] for h in split] == [[], []]
    assert [h["drift_baseline"] for h in split] == [{"agent_version": None, "config_hash": "x"}] * 2
    single = [{"agent_version": "1", "config_hash": "x"}]
    mark_drift(single)
    assert single[0]["drift"] is False


def test_hosts_are_compared_within_their_group_label():
    hosts = [{"host": "w1", "labels": {"group": "web"}, "agent_version": "1", "config_hash": "web"},
             {"host": "w2", "labels": {"group": "web"}, "agent_version": "1", "config_hash": "web"},
             {"host": "w3", "labels": {"group": "web"}, "agent_version": "1", "config_hash": "old"},
             {"host": "d1", "labels": {"group": "db"}, "agent_version": "1", "config_hash": "db"},
             {"host": "d2", "labels": {"group": "db"}, "agent_version": "1", "config_hash": "db"}]
    baselines = mark_drift(hosts)
    assert baselines == {"web": {"agent_version": "1", "config_hash": "web"},
                         "db": {"agent_version": "1", "config_hash": "db"}}
    assert [h["host"] for h in hosts if h["drift"]] == ["w3"]
    assert hosts[2]["drift_baseline"]["config_hash"] == "web"
