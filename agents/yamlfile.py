"""Read a YAML configuration file and remember the line of every key.

Used by the agent's and the console's configuration loaders so that an error can say
``config.yaml line 12`` next to the key it names. PyYAML composes the document into
nodes that carry their position (``start_mark``); the nodes are walked once to record
``key path -> line`` before they are turned into plain Python values with the safe
constructor. A key given twice in one mapping is refused (PyYAML would keep the last
one silently, so the first setting would be accepted and ignored).

PyYAML is imported on first use: an agent without a configuration file never loads it.
"""
from __future__ import annotations

from typing import Any

from agents.errors import AgentError

Path = tuple[Any, ...]


class YamlFileError(AgentError, ValueError):
    """The file cannot be read, is not YAML, or repeats a key; the message names the file."""


class YamlDocument:
    """A parsed file: ``data`` (plain Python values) and the line of each key path.

    Key paths are tuples of mapping keys (as strings) and list indexes, e.g.
    ``("apps", "shop", "target", "replicas")`` or ``("agent", "logs", "paths", 0)``.
    """

    def __init__(self, path: str, data: Any, lines: dict[Path, int]) -> None:
        self.path = path
        self.data = data
        self.lines = lines

    def line(self, key_path: Path) -> int | None:
        """Line (1-based) of ``key_path``, or of its nearest ancestor that the file holds
        (a missing required key points at the mapping that lacks it); None when none."""
        key_path = tuple(str(k) if not isinstance(k, int) else k for k in key_path)
        while key_path:
            if key_path in self.lines:
                return self.lines[key_path]
            key_path = key_path[:-1]
        return None

    def where(self, key_path: Path) -> str:
        """``"FILE line N"`` for ``key_path`` (``"FILE"`` when no line is known)."""
        line = self.line(key_path)
        return f"{self.path} line {line}" if line else str(self.path)


def read_yaml(path: str) -> YamlDocument:
    """Read ``path``; raises :class:`YamlFileError` (missing, unreadable, invalid YAML,
    several documents, a repeated key)."""
    import yaml

    try:
        with open(path, encoding="utf-8") as fh:
            text = fh.read()
    except FileNotFoundError:
        raise YamlFileError(f"{path}: no such file") from None
    except OSError as exc:
        raise YamlFileError(f"{path}: cannot read: {exc.strerror or exc}") from None
    except UnicodeDecodeError as exc:
        raise YamlFileError(f"{path}: not UTF-8 text: {exc.reason}") from None
    loader = yaml.SafeLoader(text)
    try:
        node = loader.get_single_node()
        if node is None:
            return YamlDocument(str(path), None, {})
        lines: dict[Path, int] = {}
        _walk(str(path), node, (), lines)
        data = loader.construct_document(node)
    except yaml.YAMLError as exc:
        raise YamlFileError(f"{path}: invalid YAML: {exc}") from None
    finally:
        loader.dispose()
    return YamlDocument(str(path), data, lines)


def _walk(path: str, node: Any, prefix: Path, lines: dict[Path, int]) -> None:
    import yaml

    if isinstance(node, yaml.MappingNode):
        seen: dict[str, int] = {}
        for key_node, value_node in node.value:
            if not isinstance(key_node, yaml.ScalarNode) or key_node.tag == "tag:yaml.org,2002:merge":
                continue
            key, line = key_node.value, key_node.start_mark.line + 1
            if key in seen:
                shown = ".".join(map(str, prefix + (key,)))
                raise YamlFileError(f"{path} line {line}: {shown} is given twice (first on line {seen[key]})")
            seen[key] = line
            lines[prefix + (key,)] = line
            _walk(path, value_node, prefix + (key,), lines)
    elif isinstance(node, yaml.SequenceNode):
        for index, item in enumerate(node.value):
            lines[prefix + (index,)] = item.start_mark.line + 1
            _walk(path, item, prefix + (index,), lines)
