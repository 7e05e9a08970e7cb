"""The subset of Prometheus' alert templates (Go ``text/template``) that labels and
annotations may use, compiled at load time.

Accepted actions (whitespace and ``{{-``/``-}}`` trim markers allowed):

- ``{{ $labels.NAME }}`` / ``{{ .Labels.NAME }}``: the alert's label (``<no value>`` when
  absent, as Go's template prints a missing map key);
- ``{{ $value }}`` / ``{{ .Value }}``: the sample value, printed as Go prints a float64
  (``%v``: ``strconv.FormatFloat(v, 'g', -1, 64)``);
- ``humanize``, ``humanize1024``, ``humanizePercentage`` applied to either of those,
  as ``{{ humanize $value }}`` or ``{{ $value | humanize }}`` (Prometheus'
  ``template/template.go``);
- ``{{ printf "FORMAT" ARG }}`` / ``{{ ARG | printf "FORMAT" }}`` with one ``%s``, ``%d``,
  ``%f``, ``%e`` or ``%g`` verb (flags, width and precision allowed).

Anything else (``range``, ``if``, ``query``, other functions, ``$externalLabels``) raises
TemplateError naming the action, so a rule never loads with text it would print wrong.
"""
from __future__ import annotations

import math
import re
from decimal import Decimal
from typing import Callable

from console.promql.values import format_value

_ACTION = re.compile(r"\{\{(-\s)?(.*?)(\s-)?\}\}", re.S)
_LABEL_REF = re.compile(r"(?:\$labels|\.Labels)\.([a-zA-Z_][a-zA-Z0-9_]*)\Z")
_VALUE_REF = re.compile(r"(?:\$value|\.Value)\Z")
_PRINTF = re.compile(r'printf\s+"((?:[^"\\]|\\.)*)"(?:\s+(\S+))?\Z')
_VERB = re.compile(r"%([-+ 0#]*)(\d*)(?:\.(\d+))?([sdfeEgGv])")

Render = Callable[[dict, float], str]


class TemplateError(ValueError):
    """A template outside the supported subset; the message names the action."""


def go_float_e(v: float) -> str:
    """``strconv.FormatFloat(v, 'e', -1, 64)``: the shortest exact digits in exponent
    form (``7e+01``, ``1.2345e+03``), as Prometheus writes an alert's value."""
    if math.isnan(v):
        return "NaN"
    if math.isinf(v):
        return "+Inf" if v > 0 else "-Inf"
    if v == 0:
        return "-0e+00" if math.copysign(1, v) < 0 else "0e+00"
    mantissa, _, exp_text = "{:e}".format(Decimal(repr(float(v)))).partition("e")
    exp = int(exp_text)
    digits = mantissa.rstrip("0").rstrip(".") if "." in mantissa else mantissa
    return f"{digits}e{'-' if exp < 0 else '+'}{abs(exp):02d}"


def go_float(v: float) -> str:
    """A float64 as Go's ``%v`` prints it (``strconv.FormatFloat(v, 'g', -1, 64)``): the
    shortest digits that read back exactly, in exponent form when the decimal exponent
    is below -4 or at least 6 (``1e+06``, ``1.234567e+06``, ``123456.7``, ``1e-05``)."""
    if math.isnan(v):
        return "NaN"
    if math.isinf(v):
        return "+Inf" if v > 0 else "-Inf"
    if v == 0:
        return "-0" if math.copysign(1, v) < 0 else "0"
    exp = int("{:e}".format(Decimal(repr(float(v)))).partition("e")[2])
    return go_float_e(v) if exp < -4 or exp >= 6 else format_value(v)


def _g4(v: float) -> str:
    if math.isnan(v):
        return "NaN"
    if math.isinf(v):
        return "+Inf" if v > 0 else "-Inf"
    return "%.4g" % v


def humanize(v: float) -> str:
    """Prometheus' ``humanize``: SI prefixes, four significant digits."""
    if v == 0 or math.isnan(v) or math.isinf(v):
        return _g4(v)
    prefix = ""
    if abs(v) >= 1:
        for p in ("k", "M", "G", "T", "P", "E", "Z", "Y"):
            if abs(v) < 1000:
                break
            prefix, v = p, v / 1000
    else:
        for p in ("m", "u", "n", "p", "f", "a", "z", "y"):
            if abs(v) >= 1:
                break
            prefix, v = p, v * 1000
    return _g4(v) + prefix


def humanize1024(v: float) -> str:
    """Prometheus' ``humanize1024``: binary prefixes (Ki, Mi, ...)."""
    if abs(v) <= 1 or math.isnan(v) or math.isinf(v):
        return _g4(v)
    prefix = ""
    for p in ("ki", "Mi", "Gi", "Ti", "Pi", "Ei", "Zi", "Yi"):
        if abs(v) < 1024:
            break
        prefix, v = p, v / 1024
    return _g4(v) + prefix


def humanize_percentage(v: float) -> str:
    return _g4(v * 100) + "%"


FUNCTIONS = {"humanize": humanize, "humanize1024": humanize1024, "humanizePercentage": humanize_percentage}


# What flows through a pipeline: a label's text or the sample value, then what each stage returns.
Value = str | float


def _operand(text: str) -> Callable[[dict, float], Value]:
    m = _LABEL_REF.match(text)
    if m:
        name = m.group(1)
        return lambda labels, value: labels.get(name, "<no value>")
    if _VALUE_REF.match(text):
        return lambda labels, value: value
    raise TemplateError(f"unsupported template operand {text!r}")


def _as_text(x: Value) -> str:
    return go_float(x) if isinstance(x, float) else str(x)


def _printf(fmt: str) -> Callable[[Value], str]:
    verbs = _VERB.findall(fmt.replace("%%", ""))
    if len(verbs) != 1:
        raise TemplateError(f"printf format {fmt!r} must hold exactly one verb")
    flags, width, precision, verb = verbs[0]
    spec = "%" + flags + width + (f".{precision}" if precision else "")
    found = _VERB.search(fmt)
    if found is None:  # the verb findall saw is in fmt
        raise TemplateError(f"printf format {fmt!r} must hold exactly one verb")
    placeholder = found.group(0)

    def render(x: Value) -> str:
        if verb in "sv":
            return fmt.replace(placeholder, _as_text(x), 1).replace("%%", "%")
        try:
            number = float(x)
        except (TypeError, ValueError):
            return f"%!{verb}(string={x})"
        conv = "d" if verb == "d" else verb
        value = int(number) if conv == "d" else number
        return fmt.replace(placeholder, (spec + conv) % value, 1).replace("%%", "%")
    return render


def _function(text: str) -> Callable[[Value], str]:
    """One pipeline stage after the first: a function taking the piped value last."""
    if text in FUNCTIONS:
        fn = FUNCTIONS[text]
        return lambda x: fn(float(x))
    m = _PRINTF.match(text)
    if m and m.group(2) is None:
        return _printf(m.group(1).encode().decode("unicode_escape"))
    raise TemplateError(f"unsupported template function {text!r}")


def _action(text: str) -> Callable[[dict, float], str]:
    stages = [s.strip() for s in text.split("|")]
    if any(not s for s in stages):
        raise TemplateError(f"empty pipeline stage in {{{{ {text} }}}}")
    first = stages[0]
    words = first.split(None, 1)
    head: Callable[[dict, float], Value]
    m = _PRINTF.match(first)
    if m and m.group(2) is not None:
        fmt, operand = _printf(m.group(1).encode().decode("unicode_escape")), _operand(m.group(2))
        head = lambda labels, value: fmt(operand(labels, value))  # noqa: E731
    elif len(words) == 2 and words[0] in FUNCTIONS:
        fn, operand = FUNCTIONS[words[0]], _operand(words[1].strip())
        head = lambda labels, value: fn(float(operand(labels, value)))  # noqa: E731
    else:
        operand = _operand(first)
        head = lambda labels, value: operand(labels, value)  # noqa: E731
    tail = [_function(s) for s in stages[1:]]

    def render(labels: dict, value: float) -> str:
        x = head(labels, value)
        for fn in tail:
            x = fn(x)
        return _as_text(x)
    return render


def compile_template(text: str) -> Render:
    """``text`` -> ``render(labels: dict, value: float) -> str``. Raises TemplateError."""
    parts: list = []
    pos = 0
    for m in _ACTION.finditer(text):
        literal = text[pos:m.start()]
        if m.group(1):
            literal = literal.rstrip()
        parts.append(literal)
        try:
            parts.append(_action(m.group(2).strip()))
        except TemplateError as exc:
            raise TemplateError(f"{exc} in {m.group(0)!r}") from None
        pos = m.end()
        if m.group(3):
            rest = text[pos:]
            pos += len(rest) - len(rest.lstrip())
    tail = text[pos:]
    if "{{" in tail or "}}" in tail:
        raise TemplateError(f"unbalanced template braces in {text!r}")
    parts.append(tail)
    if len(parts) == 1:
        return lambda labels, value: text

    def render(labels: dict, value: float) -> str:
        return "".join(p if isinstance(p, str) else p(labels, value) for p in parts)
    return render
