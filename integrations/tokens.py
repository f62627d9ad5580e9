"""Access tokens and JS tickets, cached once for all processes.

WeChat invalidates the previous access_token (after a 5-minute overlap) whenever a new one is
fetched, and every fetch counts against a daily quota, so one fetch must serve every gunicorn
worker and RQ job. With Redis the entry (value + expires_at) is shared and refreshed under a
`SET NX PX` lock: one caller fetches, the others wait briefly and re-read. Without Redis (dev,
single process) the same algorithm runs on an in-process dict.

A token counts as stale `refresh_margin` seconds before it expires. While someone else holds the
lock, a stale but unexpired token is still handed out instead of waiting.

With Redis, each process also keeps the fresh entries it has read (a near copy), so an upstream
call does not wait on Redis for a token it already holds. The copy is dropped when it goes stale
(by the same margin, so every process turns to the shared entry at the same moment) and when
its token is invalidated; a process whose copy was replaced elsewhere (another one refreshed
after a 40001) learns it from the upstream's refusal, which the callers answer with one
invalidate-and-retry.
"""

from __future__ import annotations

import json
import logging
import secrets
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

Fetcher = Callable[[], tuple[str, float]]  # returns (value, expires_in seconds)
log = logging.getLogger("dealerloop.integrations.tokens")

_UNLOCK = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
"""
_INVALIDATE = """
local raw = redis.call('GET', KEYS[1])
if raw and cjson.decode(raw)['value'] == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
"""


class TokenWaitTimeout(TimeoutError):
    """Another process held the refresh lock for too long and no usable token appeared."""


@dataclass(frozen=True)
class CachedToken:
    value: str
    expires_at: float


class _MemoryBackend:
    def __init__(self, clock: Callable[[], float]) -> None:
        self._clock = clock
        self._lock = threading.Lock()
        self._entries: dict[str, CachedToken] = {}
        self._locks: dict[str, tuple[str, float]] = {}

    def read(self, key: str) -> CachedToken | None:
        with self._lock:
            return self._entries.get(key)

    def write(self, key: str, entry: CachedToken, ttl: float) -> None:
        with self._lock:
            self._entries[key] = entry

    def try_lock(self, key: str, ttl: float) -> str | None:
        owner = secrets.token_hex(8)
        with self._lock:
            held = self._locks.get(key)
            if held and held[1] > time.monotonic():
                return None
            self._locks[key] = (owner, time.monotonic() + ttl)
            return owner

    def unlock(self, key: str, owner: str) -> None:
        with self._lock:
            if self._locks.get(key, ("",))[0] == owner:
                del self._locks[key]

    def delete_if(self, key: str, value: str) -> bool:
        with self._lock:
            entry = self._entries.get(key)
            if entry is not None and entry.value == value:
                del self._entries[key]
                return True
            return False


class _RedisBackend:
    def __init__(self, redis_client: Any) -> None:
        self._redis = redis_client
        self._unlock = redis_client.register_script(_UNLOCK)
        self._invalidate = redis_client.register_script(_INVALIDATE)

    def read(self, key: str) -> CachedToken | None:
        raw = self._redis.get(key)
        if raw is None:
            return None
        data = json.loads(raw)
        return CachedToken(data["value"], float(data["expires_at"]))

    def write(self, key: str, entry: CachedToken, ttl: float) -> None:
        payload = json.dumps({"value": entry.value, "expires_at": entry.expires_at})
        self._redis.set(key, payload, px=max(int(ttl * 1000), 1))

    def try_lock(self, key: str, ttl: float) -> str | None:
        owner = secrets.token_hex(8)
        if self._redis.set(key + ":lock", owner, nx=True, px=max(int(ttl * 1000), 1)):
            return owner
        return None

    def unlock(self, key: str, owner: str) -> None:
        self._unlock(keys=[key + ":lock"], args=[owner])

    def delete_if(self, key: str, value: str) -> bool:
        return bool(self._invalidate(keys=[key], args=[value]))


class TokenCache:
    """get(key, fetch) -> token; invalidate(key, stale_token). Keys come from `key()`."""

    def __init__(
        self,
        redis_client: Any = None,
        *,
        namespace: str = "dealerloop",
        clock: Callable[[], float] = time.time,
        refresh_margin: float = 300.0,
        lock_ttl: float = 15.0,
        wait_timeout: float | None = None,
        poll_interval: float = 0.02,
    ) -> None:
        self.namespace = namespace
        self.clock = clock
        self.refresh_margin = refresh_margin
        self.lock_ttl = lock_ttl
        # Waiters give up a little after a crashed holder's lock would have expired.
        self.wait_timeout = wait_timeout if wait_timeout is not None else lock_ttl + 1.0
        self.poll_interval = poll_interval
        self.shared = redis_client is not None
        self._backend = _RedisBackend(redis_client) if redis_client is not None else _MemoryBackend(clock)
        # During a Redis outage each process keeps its own tokens: more fetches (and WeChat's
        # invalidation of older tokens, answered by the bounded retry) instead of no logins at all.
        self._fallback = _MemoryBackend(clock) if redis_client is not None else None
        self._near: dict[str, CachedToken] = {}

    def key(self, service: str, ident: str) -> str:
        return f"{self.namespace}:token:{service}:{ident}"

    def _on_backend(self, operation: Callable[[Any], Any]) -> Any:
        if self._fallback is None:
            return operation(self._backend)
        import redis

        try:
            return operation(self._backend)
        except redis.RedisError as exc:
            log.warning("token cache: Redis unavailable (%s); using this process's cache", type(exc).__name__)
            return operation(self._fallback)

    def peek(self, key: str) -> CachedToken | None:
        return self._on_backend(lambda backend: backend.read(key))

    def get(self, key: str, fetch: Fetcher) -> str:
        near = self._near.get(key)
        if near is not None and self._fresh(near):
            return near.value
        entry = self._on_backend(lambda backend: self._get(backend, key, fetch))
        if self.shared and self._fresh(entry):
            self._near[key] = entry
        return entry.value

    def _fresh(self, entry: CachedToken) -> bool:
        return entry.expires_at - self.clock() > self.refresh_margin

    def _get(self, backend: Any, key: str, fetch: Fetcher) -> CachedToken:
        deadline = time.monotonic() + self.wait_timeout
        while True:
            entry = backend.read(key)
            now = self.clock()
            if entry is not None and entry.expires_at - now > self.refresh_margin:
                return entry
            owner = backend.try_lock(key, self.lock_ttl)
            if owner is not None:
                try:
                    # Re-read: another caller may have refreshed between our read and our lock.
                    entry = backend.read(key)
                    if entry is not None and self._fresh(entry):
                        return entry
                    value, expires_in = fetch()
                    expires_in = float(expires_in)
                    entry = CachedToken(value, self.clock() + expires_in)
                    backend.write(key, entry, expires_in)
                    return entry
                finally:
                    backend.unlock(key, owner)
            if entry is not None and entry.expires_at > now:
                return entry  # stale but still valid while the holder refreshes
            if time.monotonic() >= deadline:
                raise TokenWaitTimeout(f"no token for {key} within {self.wait_timeout:.1f}s")
            time.sleep(self.poll_interval)

    def invalidate(self, key: str, stale_value: str) -> bool:
        """Drop the cached token only if it is still the one that failed.

        If another caller already replaced it, the new one is kept, so N callers that saw the same
        expired token cause one refresh, not N."""
        near = self._near.get(key)
        if near is not None and near.value == stale_value:
            self._near.pop(key, None)
        return self._on_backend(lambda backend: backend.delete_if(key, stale_value))
