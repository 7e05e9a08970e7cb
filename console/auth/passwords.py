"""Password hashing with argon2id (argon2-cffi, RFC 9106 parameters by default)."""
from __future__ import annotations

import asyncio
import functools
import logging
import os
import secrets
import threading
from concurrent.futures import ThreadPoolExecutor
from typing import Callable, TypeVar

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

from console.errors import Unavailable

T = TypeVar("T")
PASSWORD_NICE = 10  # added to the nice value of password threads
log = logging.getLogger(__name__)


class PasswordsBusy(Unavailable):
    """More password checks are waiting than the pool queues: 503 ``busy``, retry in 1 s."""

    default_code = "busy"

    def __init__(self, waiting: int) -> None:
        super().__init__(f"password hashing is busy ({waiting} checks waiting); retry shortly",
                         {"waiting": waiting}, headers={"Retry-After": "1"})


class Passwords:
    """Hash and verify passwords; ``needs_rehash`` tells when parameters changed.

    argon2id costs about 64 MiB and tens to hundreds of milliseconds of CPU per call, so
    the ``*_off_thread`` methods run it on a pool of its own (``workers`` threads, at most
    ``max_waiting`` calls queued, beyond that PasswordsBusy): never on the IOLoop and never
    on the database writer, where a flood of wrong logins would delay every ingest behind
    it. argon2-cffi releases the GIL while hashing, and the pool's threads (and argon2's
    lane threads they start) run at a lower CPU priority, so a flood cannot starve ingest
    of CPU either. Call them from the IOLoop thread (the queue count is kept there)."""

    def __init__(self, hasher: PasswordHasher | None = None, workers: int = 2, max_waiting: int = 32) -> None:
        self._hasher = hasher or PasswordHasher()
        self._pool = ThreadPoolExecutor(workers, thread_name_prefix="passwords", initializer=_lower_priority)
        self._max_waiting = max_waiting
        self._waiting = 0
        self._dummy: str | None = None

    def hash(self, password: str) -> str:
        return self._hasher.hash(password)

    def verify(self, stored_hash: str, password: str) -> bool:
        try:
            return self._hasher.verify(stored_hash, password)
        except (VerificationError, InvalidHashError):
            return False

    def needs_rehash(self, stored_hash: str) -> bool:
        return self._hasher.check_needs_rehash(stored_hash)

    def verify_or_waste(self, stored_hash: str | None, password: str) -> bool:
        """:meth:`verify`; without a hash (no such user) the same work against a random
        one, so an unknown name is not revealed by a faster answer. False then."""
        if stored_hash is None:
            if self._dummy is None:
                self._dummy = self.hash(generate_password())
            self.verify(self._dummy, password)
            return False
        return self.verify(stored_hash, password)

    async def verify_off_thread(self, stored_hash: str | None, password: str) -> bool:
        """:meth:`verify_or_waste` on the password pool. Raises PasswordsBusy."""
        return await self._off_thread(self.verify_or_waste, stored_hash, password)

    async def hash_off_thread(self, password: str) -> str:
        """:meth:`hash` on the password pool. Raises PasswordsBusy."""
        return await self._off_thread(self.hash, password)

    async def _off_thread(self, fn: Callable[..., T], *args: object) -> T:
        if self._waiting >= self._max_waiting:
            raise PasswordsBusy(self._waiting)
        self._waiting += 1
        try:
            return await asyncio.get_running_loop().run_in_executor(self._pool, functools.partial(fn, *args))
        finally:
            self._waiting -= 1

    def close(self) -> None:
        self._pool.shutdown(wait=True)


def _lower_priority() -> None:
    """Run this pool thread at nice +10 (Linux schedules threads one by one, and threads it
    starts inherit the value): logins get the CPU that ingest and queries leave."""
    try:
        os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), PASSWORD_NICE)
    except (AttributeError, OSError) as exc:  # not Linux or not allowed: same priority as the rest
        log.info("password checks run at normal CPU priority: %s", exc)


def generate_password() -> str:
    """A random 20-character URL-safe password (about 120 bits)."""
    return secrets.token_urlsafe(15)
