"""Alertmanager's matcher syntax and semantics (pkg/labels): parsing, anchored RE2
regexes, absent labels as "", and the refusals."""
from __future__ import annotations

import pytest

from console.errors import InvalidInput
from console.silences.matchers import Matcher, parse_matchers


def test_parse_forms():
    assert parse_matchers('{alertname="HostDown", instance=~"web-.*",env!="dev",job!~"x|y"}') == [
        Matcher("alertname", "HostDown"), Matcher("instance", "web-.*", True), Matcher("env", "dev", False, False),
        Matcher("job", "x|y", True, False)]
    assert parse_matchers("alertname=HostDown") == [Matcher("alertname", "HostDown")]
    assert parse_matchers(' a = "x,y" , b=z ') == [Matcher("a", "x,y"), Matcher("b", "z")]
    assert parse_matchers(r'a="q\"uote\\d\n"') == [Matcher("a", 'q"uote\\d\n')]
    assert parse_matchers("{}") == [] and parse_matchers("") == []
    assert str(Matcher("a", 'x"y', True, False)) == 'a!~"x\\"y"'


@pytest.mark.parametrize("text", ['{a="1"', "a", "=x", 'a="1" b="2"', 'a="open', 'a="\\q"', "a=~(", "1a=x"])
def test_parse_refusals(text):
    with pytest.raises(InvalidInput):
        parse_matchers(text)


def test_semantics():
    regex = Matcher("instance", "web-.*", True)
    assert regex.matches({"instance": "web-1"})
    assert not regex.matches({"instance": "db-web-1"})  # anchored at both ends
    assert not regex.matches({"instance": "web-1\n"})
    assert Matcher("env", "", False).matches({})  # absent label is ""
    assert Matcher("env", "prod", False, False).matches({})
    assert not Matcher("env", ".+", True).matches({})
    assert Matcher("env", "prod|stage", True, False).matches({"env": "dev"})
    assert Matcher.from_json({"name": "a", "value": "b", "isRegex": False}) == Matcher("a", "b")
    with pytest.raises(InvalidInput):
        Matcher.from_json({"name": "a", "value": "b"})
