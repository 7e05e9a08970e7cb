"""Named consoles for the command line (kubectl-style contexts), kept in a user file.

The file is ``$XDG_CONFIG_HOME/fleetdeck/contexts.yaml`` (``~/.config/fleetdeck/contexts.yaml``
when ``XDG_CONFIG_HOME`` is unset), written with mode 0600 in a 0700 folder::

    current: prod
    contexts:
      prod: {url: "https://fleetdeck.example.com", token_env: PROD_FLEETDECK_TOKEN}
      lab:  {url: "http://10.0.0.5:8700", token: "fd_api_..."}

A context's token is read from the environment variable ``token_env`` names, else from
its ``token`` in the file. ``FLEETDECK_URL`` and ``FLEETDECK_TOKEN`` override the
current context's URL and token; ``FLEETDECK_CONTEXT`` picks a context other than
``current`` for one command. A file readable by others is refused (it may hold
tokens), as ssh refuses such a private key. Every problem raises
:class:`ContextError` naming the file.
"""
from __future__ import annotations

import os
import re
import stat
import urllib.parse
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from console.i18n import tx

NAME_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,62}")
ENV_NAME_RE = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
KEYS = frozenset({"url", "token", "token_env"})


class ContextError(Exception):
    """The contexts file or a context is invalid or missing; the message says which and why."""


@dataclass(frozen=True)
class Target:
    """The console a client command talks to: ``url``, ``token`` ("" for none) and
    where each came from (``environment FLEETDECK_URL``, ``context prod``, ``default``)."""

    url: str
    token: str
    url_from: str
    token_from: str


def contexts_path(env: Mapping[str, str] | None = None) -> Path:
    """Where the contexts file is (it may not exist)."""
    env = os.environ if env is None else env
    base = env.get("XDG_CONFIG_HOME") or os.path.join(os.path.expanduser("~"), ".config")
    return Path(base) / "fleetdeck" / "contexts.yaml"


def check_url(url: str, where: str) -> str:
    """``url`` without a trailing slash; raises ContextError unless it is http(s)://HOST[:PORT][/path]."""
    parts = urllib.parse.urlsplit(url.strip())
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise ContextError(tx("{where} must be an http:// or https:// URL such as http://127.0.0.1:8700, got {url}",
                              where=where, url=repr(url)))
    return url.strip().rstrip("/")


def load(path: Path) -> dict[str, Any]:
    """The document ``{"current": str | None, "contexts": {name: {...}}}``; an absent
    file is an empty one. Raises ContextError."""
    import yaml

    try:
        st = path.stat()
    except FileNotFoundError:
        return {"current": None, "contexts": {}}
    if st.st_mode & (stat.S_IRWXG | stat.S_IRWXO):
        raise ContextError(tx("{path} is readable by others (mode {mode}); it may hold tokens: chmod 600 {path}",
                              path=str(path), mode=f"{stat.S_IMODE(st.st_mode):04o}"))
    try:
        doc = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except (OSError, yaml.YAMLError) as exc:
        raise ContextError(tx("{path}: cannot read: {reason}", path=str(path), reason=str(exc))) from None
    if not isinstance(doc, dict) or set(doc) - {"current", "contexts"}:
        raise ContextError(f"{path}: expected the keys current and contexts only")
    contexts = doc.get("contexts") or {}
    if not isinstance(contexts, dict):
        raise ContextError(f"{path}: contexts must be a mapping of name to context")
    for name, ctx in contexts.items():
        if not isinstance(ctx, dict) or set(ctx) - KEYS or not isinstance(ctx.get("url"), str):
            raise ContextError(f"{path}: context {name!r} must have a url and may have token or token_env only")
        check_url(ctx["url"], f"{path}: context {name!r} url")
    current = doc.get("current")
    if current is not None and current not in contexts:
        raise ContextError(f"{path}: current names {current!r}, which is not a context")
    return {"current": current, "contexts": contexts}


def save(path: Path, doc: dict[str, Any]) -> None:
    """Write ``doc`` atomically with mode 0600 (folder 0700)."""
    import yaml

    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    tmp = path.with_name(path.name + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as fh:
        yaml.safe_dump(doc, fh, default_flow_style=False, sort_keys=True)
    os.chmod(tmp, 0o600)  # O_CREAT's mode is not applied to an existing file
    os.replace(tmp, path)


def add(path: Path, name: str, url: str, token_env: str | None = None, token: str | None = None) -> bool:
    """Add or replace context ``name``; the first context added becomes current.
    Returns whether it is current. Raises ContextError."""
    if not NAME_RE.fullmatch(name):
        raise ContextError(tx("invalid context name {name}: letters, digits, '.', '_' and '-'", name=repr(name)))
    if token_env is not None and not ENV_NAME_RE.fullmatch(token_env):
        raise ContextError(tx("--token-env must name an environment variable, got {value}", value=repr(token_env)))
    doc = load(path)
    ctx: dict[str, str] = {"url": check_url(url, "--url")}
    if token_env:
        ctx["token_env"] = token_env
    if token:
        ctx["token"] = token
    doc["contexts"][name] = ctx
    if doc["current"] is None:
        doc["current"] = name
    save(path, doc)
    return bool(doc["current"] == name)


def use(path: Path, name: str) -> None:
    doc = load(path)
    if name not in doc["contexts"]:
        raise ContextError(_unknown(name, doc, path))
    doc["current"] = name
    save(path, doc)


def remove(path: Path, name: str) -> None:
    doc = load(path)
    if name not in doc["contexts"]:
        raise ContextError(_unknown(name, doc, path))
    del doc["contexts"][name]
    if doc["current"] == name:
        doc["current"] = None
    save(path, doc)


def _unknown(name: str, doc: dict[str, Any], path: Path) -> str:
    if not doc["contexts"]:
        return tx("no context {name} in {path} (contexts: none; add one with `fleetdeck context add`)",
                  name=repr(name), path=str(path))
    return tx("no context {name} in {path} (contexts: {known})", name=repr(name), path=str(path),
              known=", ".join(sorted(doc["contexts"])))


def resolve(env: Mapping[str, str] | None = None, default_url: str = "http://127.0.0.1:8700") -> Target:
    """The console and token a client command uses: ``FLEETDECK_URL``/``FLEETDECK_TOKEN``,
    else the context (``FLEETDECK_CONTEXT`` or the file's current one), else
    ``default_url`` and no token. Raises ContextError."""
    env = os.environ if env is None else env
    url, url_from = env.get("FLEETDECK_URL", ""), "environment FLEETDECK_URL"
    token, token_from = env.get("FLEETDECK_TOKEN", ""), "environment FLEETDECK_TOKEN"
    path = contexts_path(env)
    if not (url and token):
        doc = load(path)
        name = env.get("FLEETDECK_CONTEXT") or doc["current"]
        if name and name not in doc["contexts"]:
            raise ContextError(tx("{problem} (named by FLEETDECK_CONTEXT)", problem=_unknown(name, doc, path)))
        ctx = doc["contexts"].get(name) if name else None
        if ctx is not None:
            if not url:
                url, url_from = ctx["url"], f"context {name}"
            if not token and ctx.get("token_env"):
                token, token_from = env.get(ctx["token_env"], ""), f"environment {ctx['token_env']} (context {name})"
            elif not token and ctx.get("token"):
                token, token_from = ctx["token"], f"context {name} in {path}"
    if not url:
        url, url_from = default_url, "default"
    where = {"environment FLEETDECK_URL": "FLEETDECK_URL (environment)", "default": "the URL"}.get(url_from, url_from)
    return Target(check_url(url, where), token, url_from,
                  token_from if token else "")
