"""Alertmanager's matcher syntax and semantics (pkg/labels) as silences use them:
parsing, the API's matcher object, anchored RE2 regexes, absent labels as "", and the
refusals (400s where a request carried them). The parser's cases from Alertmanager's own
parse_test.go are in test_notify_routing.py: silences and routes share console/matchers.py."""
from __future__ import annotations

import pytest

from console.errors import InvalidInput
from console.matchers import Matcher, matches_all, parse_matchers


def m(name: str, op: str, value: str) -> Matcher:
    return Matcher.make(name, op, value)


def test_parse_forms():
    assert parse_matchers('{alertname="HostDown", instance=~"web-.*",env!="dev",job!~"x|y"}') == [
        m("alertname", "=", "HostDown"), m("instance", "=~", "web-.*"), m("env", "!=", "dev"), m("job", "!~", "x|y")]
    assert parse_matchers("alertname=HostDown") == [m("alertname", "=", "HostDown")]
    assert parse_matchers(' a = "x,y" , b=z ') == [m("a", "=", "x,y"), m("b", "=", "z")]
    assert parse_matchers(r'a="q\"uote\\d\n"') == [m("a", "=", 'q"uote\\d\n')]
    assert parse_matchers("{}") == [] and parse_matchers("") == []
    assert str(m("a", "!~", 'x"y')) == 'a!~"x\\"y"'
    # Alertmanager's classic parser, as amtool reads a filter: a spurious escape is kept
    # as written, and a brace left open is not an error.
    assert parse_matchers(r'a="\q"') == [m("a", "=", "\\q")]
    assert parse_matchers('{a="1"') == [m("a", "=", "1")]


@pytest.mark.parametrize("text,details", [
    ("a", {"matchers": "a"}), ("=x", {"matchers": "=x"}), ('a="1" b="2"', {"matchers": 'a="1" b="2"'}),
    ('a="open', {"matchers": 'a="open'}), ("1a=x", {"matchers": "1a=x"}), ("a=~(", {"matcher": "a"})])
def test_parse_refusals_are_bad_requests(text, details):
    with pytest.raises(InvalidInput) as refused:
        parse_matchers(text)
    assert refused.value.status == 400 and refused.value.details == details


def test_semantics():
    regex = m("instance", "=~", "web-.*")
    assert matches_all([regex], {"instance": "web-1"})
    assert not matches_all([regex], {"instance": "db-web-1"})  # anchored at both ends
    assert not matches_all([regex], {"instance": "web-1\n"})
    assert matches_all([m("env", "=", "")], {})  # absent label is ""
    assert matches_all([m("env", "!=", "prod")], {})
    assert not matches_all([m("env", "=~", ".+")], {})
    assert matches_all([m("env", "!~", "prod|stage")], {"env": "dev"})
    assert matches_all([], {"env": "dev"})


def test_the_api_matcher_object():
    assert Matcher.from_json({"name": "a", "value": "b", "isRegex": False}) == m("a", "=", "b")
    assert Matcher.from_json({"name": "a", "value": "b.*", "isRegex": True, "isEqual": False}) == m("a", "!~", "b.*")
    for op in ("=", "!=", "=~", "!~"):
        assert Matcher.from_json(m("job", op, "x").to_json()) == m("job", op, "x")
    assert m("job", "!~", "x").to_json() == {"name": "job", "value": "x", "isRegex": True, "isEqual": False}
    for doc in ({"name": "a", "value": "b"}, {"name": "a", "value": 1, "isRegex": False}, ["a"],
                {"name": "a:b", "value": "b", "isRegex": False}, {"name": "a", "value": "(", "isRegex": True}):
        with pytest.raises(InvalidInput):
            Matcher.from_json(doc)
