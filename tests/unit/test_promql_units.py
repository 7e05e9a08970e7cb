"""Pieces of the PromQL engine checked on their own: settings, value formatting, Go's
``Regexp.Expand`` as ``label_replace`` uses it, and classic-histogram quantiles."""
from __future__ import annotations

import math

import pytest
import re2

from console.config import ConfigError
from console.promql import ast
from console.promql.functions import bucket_quantile, expand
from console.promql.service import PromQLService
from console.promql.values import format_value, format_values


@pytest.mark.parametrize("kwargs, key", [({"timeout_s": 0.0}, "promql_timeout"),
                                         ({"timeout_s": float("nan")}, "promql_timeout"),
                                         ({"timeout_s": -5.0}, "promql_timeout"),
                                         ({"max_samples": 0}, "promql_max_samples")])
def test_settings_out_of_range_are_refused(kwargs, key):
    with pytest.raises(ConfigError, match=f"console.{key}"):
        PromQLService(None, **kwargs)


@pytest.mark.parametrize("value, text", [(1.0, "1"), (0.5, "0.5"), (-0.0, "-0"), (1e21, "1000000000000000000000"),
                                         (1e-7, "0.0000001"), (1 / 3, "0.3333333333333333"),
                                         (float("inf"), "+Inf"), (float("-inf"), "-Inf"), (float("nan"), "NaN"),
                                         (123456789.125, "123456789.125")])
def test_values_are_written_as_prometheus_writes_them(value, text):
    assert format_value(value) == text
    assert format_values([2.0, value, 0.1 + 0.2]) == ["2", text, "0.30000000000000004"]  # a range result's values


def test_a_range_of_values_is_written_as_each_value_is():
    # whole numbers, fractions with ".0" inside ("1.05", "100.05"), negatives, zeros; then
    # the same with an exponent or a NaN among them (the other path)
    values = [v * sign for i in range(2000) for sign in (1, -1)
              for v in (float(i), i + 0.05, i / 7, 1.05 * 10 ** (i % 12), 100.05, 0.0)]
    assert format_values(values) == [format_value(v) for v in values]
    for odd in (1e21, 1e-7, float("nan"), float("inf")):
        mixed = values[:50] + [odd] + values[50:100]
        assert format_values(mixed) == [format_value(v) for v in mixed]


@pytest.mark.parametrize("template, want", [("$1", "ab"), ("${1}x", "abx"), ("$1x", ""), ("$name-$2", "ab-c"),
                                            ("${name}", "ab"), ("$$1", "$1"), ("$9", ""), ("a$", "a$"),
                                            ("${bad", "${bad")])
def test_expand_follows_go(template, want):
    match = re2.compile("^(?:(?P<name>a.)(c))$").search("abc")
    assert expand(template, match) == want


def test_bucket_quantile():
    inf = float("inf")
    buckets = [(0.1, 10.0), (0.5, 30.0), (1.0, 40.0), (inf, 40.0)]
    assert bucket_quantile(0.5, buckets) == pytest.approx(0.1 + 0.4 * (10 / 20))  # rank 20 in (0.1, 0.5]
    assert bucket_quantile(1.0, buckets) == 1.0  # the top rank in the +Inf bucket: the last finite bound
    assert math.isnan(bucket_quantile(0.5, buckets[:-1]))  # no +Inf bucket
    assert math.isnan(bucket_quantile(0.5, [(1.0, 0.0), (inf, 0.0)]))  # no observations
    assert bucket_quantile(-1, buckets) == -inf and bucket_quantile(2, buckets) == inf
    # Non-monotonic counts (a scrape between bucket updates) are made monotonic: 8 reads as
    # 10, so rank 11 falls in (0.5, 1] holding 2 observations, 1 of them below the rank.
    assert bucket_quantile(0.55, [(0.1, 10.0), (0.5, 8.0), (1.0, 12.0), (inf, 20.0)]) == pytest.approx(0.75)


@pytest.mark.parametrize("text, construct", [("info(up)", "info()"), ("limitk(1, up)", "limitk()"),
                                             ('up{a="b" or c="d"}', "'or' inside label matchers")])
def test_unsupported_constructs_are_named(text, construct):
    with pytest.raises(ast.Unsupported, match=construct.replace("(", r"\(").replace(")", r"\)")):
        ast.parse(text)


@pytest.mark.parametrize("text, name, value", [
    # A raw string has no escapes (PromQL docs, "String literals"): Grafana's ${var:regex}.
    (r"up{instance=~`127\.0\.0\.1:9100|10\.0\.0\.9:9100`}", "instance", r"127\.0\.0\.1:9100|10\.0\.0\.9:9100"),
    ('up{a=`x\\"y\\\\z`}', "a", 'x\\"y\\\\z'),
    ("up{a=`two\nlines`, b=\"`\\\\.`\"} # `c\\.`", "a", "two\nlines"),
    ("up{a=`two\nlines`, b=\"`\\\\.`\"}", "b", "`\\.`"),
])
def test_raw_strings_keep_backslashes(text, name, value):
    matchers = {m.name: m.value for m in ast.parse(text).matchers}
    assert matchers[name] == value
