"""What a stored kubeconfig may hold: inline credentials only.

A kubeconfig can make its reader run programs (``users[].user.exec``, the
``auth-provider`` plugins) or read files (``tokenFile``, ``client-certificate``,
``client-key``, ``certificate-authority``). A kubeconfig stored as a secret comes from
an admin of the console, not from the operator of its host, so it must not be able to
do either: it may authenticate with an inline ``token`` or an inline client certificate
(``client-certificate-data`` + ``client-key-data``) and trust an inline
``certificate-authority-data``; nothing else. (``in_cluster: true`` in the app's target
uses the pod's service account and needs no kubeconfig.) The check runs when the secret
is stored (the API answers 422 naming the field) and again whenever a deploy loads it,
so a kubeconfig stored before this rule cannot run anything either.

Field names are those of the kubeconfig format (Kubernetes docs, "Organizing Cluster
Access Using kubeconfig Files"; ``clientcmd/api/v1/types.go``).
"""
from __future__ import annotations

from typing import Any

import yaml

TOP_KEYS = frozenset({"apiVersion", "kind", "clusters", "contexts", "users", "current-context", "preferences"})
USER_KEYS = frozenset({"token", "client-certificate-data", "client-key-data"})
CLUSTER_KEYS = frozenset({"server", "certificate-authority-data", "insecure-skip-tls-verify", "tls-server-name"})
CONTEXT_KEYS = frozenset({"cluster", "user", "namespace"})
# Keys refused with a reason of their own (others are refused as unknown).
WHY = {
    "exec": "runs a program",
    "auth-provider": "runs an authentication plugin",
    "tokenFile": "reads a file of the console's host",
    "client-certificate": "reads a file of the console's host (use client-certificate-data)",
    "client-key": "reads a file of the console's host (use client-key-data)",
    "certificate-authority": "reads a file of the console's host (use certificate-authority-data)",
}


class KubeconfigRefused(ValueError):
    """The kubeconfig is not plain YAML of inline credentials; ``field`` names the first
    offending field (``users[0].user.exec``)."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field


def check_kubeconfig(source: str | Any) -> dict:
    """The parsed kubeconfig (``source`` is YAML text or an already parsed document) when
    it holds inline credentials only; raises KubeconfigRefused otherwise."""
    if isinstance(source, str):
        try:
            document = yaml.safe_load(source)
        except yaml.YAMLError as exc:
            raise KubeconfigRefused("value", f"not valid YAML: {str(exc)[:200]}") from None
    else:
        document = source
    if not isinstance(document, dict):
        raise KubeconfigRefused("value", "a kubeconfig is a YAML mapping")
    _keys(document, TOP_KEYS, "")
    for section, inner, allowed in (("users", "user", USER_KEYS), ("clusters", "cluster", CLUSTER_KEYS),
                                    ("contexts", "context", CONTEXT_KEYS)):
        entries = document.get(section) or []
        if not isinstance(entries, list):
            raise KubeconfigRefused(section, "must be a list")
        for index, entry in enumerate(entries):
            where = f"{section}[{index}]"
            if not isinstance(entry, dict):
                raise KubeconfigRefused(where, "must be a mapping")
            _keys(entry, frozenset({"name", inner}), where + ".")
            body = entry.get(inner) or {}
            if not isinstance(body, dict):
                raise KubeconfigRefused(f"{where}.{inner}", "must be a mapping")
            _keys(body, allowed, f"{where}.{inner}.")
    return document


def _keys(mapping: dict, allowed: frozenset, prefix: str) -> None:
    for key in mapping:
        if key not in allowed:
            field = f"{prefix}{key}"
            raise KubeconfigRefused(field, f"refused: {WHY.get(key, 'not allowed in a stored kubeconfig')}; "
                                           "only an inline token or client certificate is accepted")
