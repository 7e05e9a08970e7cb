"""Building blocks of the deploy configuration models (``apps:`` and ``inventory:``).

The sections are pydantic v2 models (``targets.py``, ``apps.py``, ``inventory.py``): each
model is both the schema of its YAML mapping and the frozen object the drivers read.
This module holds what they share and imports nothing else of the package, so the
modules form one line: ``schema`` <- ``targets`` <- ``apps``, ``schema`` <- ``inventory``.

- :class:`Section`: the base model. Unknown keys are refused, models are frozen, numbers
  must be finite, a key set to null (``replicas:``) takes its default, and a subclass
  may fill defaults that depend on the app (``name_prefix`` is the app's name) in
  :meth:`Section.fill` from the validation context (``{"app": NAME, "driver": DRIVER}``).
- Field types matching YAML as written: :data:`Text` (a string; a number is read as its
  text, true/false is refused), :data:`Int` (a whole number, not ``2.0`` nor ``"2"``),
  :data:`Seconds` (an int or float, not a string), :data:`Flag` (true or false only),
  :data:`Strings` (a list of strings), :data:`ScalarMap` (a mapping of scalars, kept as
  sorted ``(key, text)`` pairs).
- The name and image rules Docker, Kubernetes and the API share, and
  :func:`parse_section` which validates one section and raises ``ConfigError`` with one
  line per problem naming the key path (``apps.shop.target.replicas``) and, when the
  loader knows it, the file and line.

Adding an option is one line in its model: ``name: Type = Field(default, ge=..)``,
then document it in config.yaml and docs/deploys.md.
"""
from __future__ import annotations

import re
from typing import Annotated, Any, Callable, Mapping, TypeVar

from pydantic import BaseModel, BeforeValidator, ConfigDict, Strict, ValidationError, ValidationInfo, model_validator

from console.config import ConfigError, validation_messages
from console.i18n import TextLines, tx

APP_NAME_RE = re.compile(r"^[a-z0-9][a-z0-9_-]{0,62}$")
# A Docker tag, or an image digest.
VERSION_RE = re.compile(r"^(?:[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}|sha256:[a-f0-9]{64})$")
_COMPONENT = r"[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*"
REPOSITORY_RE = re.compile(rf"^(?:[A-Za-z0-9.-]+(?::[0-9]{{1,5}})?/)?{_COMPONENT}(?:/{_COMPONENT})*$")

SourceOf = Callable[[tuple], "str | None"]  # key path (relative to the section) -> "FILE line N" or None


def valid_app_name(name: Any) -> bool:
    return isinstance(name, str) and bool(APP_NAME_RE.fullmatch(name))


def valid_version(version: Any) -> bool:
    return isinstance(version, str) and bool(VERSION_RE.fullmatch(version))


def image_reference(repository: str, version: str) -> str:
    """``repository:version``, or ``repository@sha256:…`` when the version is a digest.
    Raises ValueError when either part is malformed."""
    if not REPOSITORY_RE.fullmatch(repository) or not valid_version(version):
        raise ValueError(tx("invalid image reference {repository} {version}",
                            repository=repr(repository), version=repr(version)))
    return f"{repository}@{version}" if version.startswith("sha256:") else f"{repository}:{version}"


def _text(value: Any) -> Any:
    if isinstance(value, bool):
        raise ValueError(tx("expected a string, not true or false (quote it), got {value}", value=repr(value)))
    return str(value) if isinstance(value, (int, float)) else value


def _seconds(value: Any) -> Any:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ValueError(tx("expected a number of seconds, got {value}", value=repr(value)))
    return value


def _scalar_map(value: Any) -> Any:
    if not isinstance(value, Mapping):
        raise ValueError(tx("expected a mapping, got {value}", value=repr(value)))
    out = {}
    for key, item in value.items():
        if isinstance(item, (dict, list)) or item is None:
            raise ValueError(tx("{key}: expected a scalar value, got {item}", key=key, item=repr(item)))
        out[str(key)] = "true" if item is True else "false" if item is False else str(item)
    return tuple(sorted(out.items()))


Text = Annotated[str, BeforeValidator(_text)]
Int = Annotated[int, Strict()]
Seconds = Annotated[float, BeforeValidator(_seconds)]
Flag = Annotated[bool, Strict()]
Strings = tuple[Annotated[str, Strict()], ...]
ScalarMap = Annotated[tuple[tuple[str, str], ...], BeforeValidator(_scalar_map)]


class Section(BaseModel):
    """Base of every deploy configuration model (see the module docstring)."""

    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)

    @model_validator(mode="before")
    @classmethod
    def _section(cls, data: Any, info: ValidationInfo) -> Any:
        if isinstance(data, cls):
            return data
        if data is None:
            data = {}
        if not isinstance(data, Mapping):
            raise ValueError(tx("expected a mapping, got {type}", type=type(data).__name__))
        return cls.fill({k: v for k, v in data.items() if v is not None}, info.context or {})

    @classmethod
    def fill(cls, data: dict[str, Any], context: Mapping[str, Any]) -> dict[str, Any]:
        """Defaults that depend on the context; ``data`` has no null values."""
        return data


M = TypeVar("M", bound=BaseModel)


def parse_section(model: type[M], raw: Any, path: str, context: Mapping[str, Any] | None = None,
                  source_of: SourceOf | None = None) -> M:
    """``model`` validated from ``raw``, the section at key path ``path`` (``apps.web``).
    Raises ConfigError: one line per problem, ``PATH.KEY: problem, got VALUE (from FILE line N)``."""
    try:
        return model.model_validate(raw, context=dict(context or {}))
    except ValidationError as exc:
        where = source_of or (lambda loc: None)
        raise ConfigError(TextLines(validation_messages(exc, path, where))) from None
