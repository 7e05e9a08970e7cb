"""The agent's error tree (it imports nothing from the console, so it has its own).

``AgentError`` is the base; ``ConfigError`` (agents/config.py: the configuration is
unreadable or invalid, also a ``ValueError``), ``YamlFileError`` (agents/yamlfile.py),
``PushError`` (agents/client.py: the console did not accept a batch or an enrolment) and
``WorkerDied`` (agents/agent.py, also a ``RuntimeError``) subclass it. ``str(exc)`` is the
message the agent prints or logs.
"""
from __future__ import annotations


class AgentError(Exception):
    """Base of every error the agent reports."""

    def __reduce__(self) -> tuple:
        # Subclasses take other arguments than the message (PushError's status and code
        # first): rebuild without calling __init__, then restore the attributes.
        return _restore, (type(self), self.args), self.__dict__


def _restore(cls: type[AgentError], args: tuple) -> AgentError:
    exc = cls.__new__(cls)
    exc.args = args
    return exc
