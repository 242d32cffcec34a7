"""Breaker and spend state on Redis, shared by every process that points at the same server.

Each update that must not race is one Lua script, so it runs atomically on the
server: two processes cannot both take a breaker's probe slot, a failure count
cannot be lost between a read and a write, and a spend reservation cannot
overshoot its limit. Floats are kept as ``%.17g`` strings and added as doubles
inside Lua, so every total is the very float ``MemoryStateStore`` would compute.

Keys, all expiring::

    {namespace}:breaker:{model key}            hash: failures, open, retry_at, probe_until, probe_at, cooldown
    {namespace}:spend:{scope}:{window start}   the window's total
    {namespace}:rate:{deployment key}          sorted set: request id -> when it was sent (the rpm log)
    {namespace}:rate:{deployment key}:t        hash: request id -> tokens, '_total', '_hold' (the tpm log, the hold)

When Redis does not answer within ``operation_timeout``, the call is served by a
local ``MemoryStateStore`` instead, one ``taskmodels.state.redis_lost`` warning is
logged, and Redis is tried again at most every ``retry_interval`` seconds; when it
answers, ``taskmodels.state.redis_restored`` is logged and calls go back to it.
State recorded locally during an outage stays local: budgets are then enforced per
process until Redis is back.
"""

from __future__ import annotations

import asyncio
import hashlib
import math
import time
import weakref
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import Any, TypeVar
from urllib.parse import urlsplit

from redis.asyncio import Redis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import NoScriptError

from taskmodels.errors import SettingsError
from taskmodels.log import library_logger
from taskmodels.resilience.ratelimit import RateDecision, RateSnapshot
from taskmodels.resilience.state import (
    Admission,
    BreakerSnapshot,
    BreakerStateName,
    MemoryStateStore,
    SpendDecision,
    StateStore,
    window_start,
)
from taskmodels.sections import StateSettings

__all__ = ["RedisStateStore"]

T = TypeVar("T")

_log = library_logger("state")

_MIN_BREAKER_TTL = 3600.0
_MAX_TTL = 366 * 86400.0
_SPEND_TTL_MARGIN = 60.0


class _Lua:
    """A script sent by SHA (``EVALSHA``) and loaded once per server when it does not know it yet."""

    def __init__(self, source: str) -> None:
        self.source = source
        self.sha = hashlib.sha1(source.encode(), usedforsecurity=False).hexdigest()

    async def __call__(self, client: Redis, keys: Sequence[str], args: Sequence[str]) -> Any:
        try:
            return await client.evalsha(self.sha, len(keys), *keys, *args)
        except NoScriptError:
            # A restarted or flushed server has forgotten it; EVAL loads it again.
            return await client.eval(self.source, len(keys), *keys, *args)


_F = "string.format('%.17g', {})"

_ADMIT = _Lua(
    f"""
local b = redis.call('HMGET', KEYS[1], 'open', 'retry_at', 'probe_until')
if b[1] ~= '1' then return {{'1', '0', ''}} end
local now = tonumber(ARGV[1])
if now < tonumber(b[2]) then return {{'0', '0', b[2]}} end
if b[3] and now < tonumber(b[3]) then return {{'0', '0', b[3]}} end
redis.call('HSET', KEYS[1], 'probe_until', {_F.format("now + tonumber(ARGV[2])")}, 'probe_at', ARGV[1])
local ttl = tonumber(ARGV[3])
if redis.call('PTTL', KEYS[1]) < ttl then redis.call('PEXPIRE', KEYS[1], ttl) end
return {{'1', '1', ''}}
"""
)

_RECORD_SUCCESS = _Lua(
    """
local b = redis.call('HMGET', KEYS[1], 'failures', 'open')
if not b[1] and not b[2] then return 0 end
if (tonumber(b[1]) or 0) > 0 or b[2] == '1' then
  redis.call('DEL', KEYS[1])
else
  redis.call('HDEL', KEYS[1], 'probe_until', 'probe_at')
end
return 1
"""
)

_RECORD_FAILURE = _Lua(
    f"""
local b = redis.call('HMGET', KEYS[1], 'open', 'retry_at', 'probe_until', 'cooldown', 'probe_at')
local failures = redis.call('HINCRBY', KEYS[1], 'failures', 1)
local is_open = b[1] == '1'
local was_probe = is_open and b[3]
local retry_at = b[2]
local cooldown = b[4]
if was_probe or failures >= tonumber(ARGV[2]) then
  -- next_cooldown() in state.py, with the same float operations
  local initial = tonumber(ARGV[3])
  local ceiling = math.max(tonumber(ARGV[4]) or initial, initial)
  local current = is_open and tonumber(cooldown) or 0
  if was_probe then current = current * 2 end
  local c = math.min(math.max(current, initial), ceiling)
  is_open = true
  cooldown = {_F.format("c")}
  -- a failed probe's cooldown counts from when it was admitted, any other failure's from now
  local start = was_probe and tonumber(b[5]) or tonumber(ARGV[1])
  retry_at = {_F.format("start + c")}
  redis.call('HSET', KEYS[1], 'open', '1', 'retry_at', retry_at, 'cooldown', cooldown)
  redis.call('HDEL', KEYS[1], 'probe_until', 'probe_at')
elseif not is_open then
  redis.call('HSET', KEYS[1], 'open', '0')
end
redis.call('PEXPIRE', KEYS[1], ARGV[5])
return {{tostring(failures), is_open and '1' or '0', retry_at or '', cooldown or ''}}
"""
)

_RESERVE_SPEND = _Lua(
    f"""
local total = tonumber(redis.call('GET', KEYS[1]) or '0')
local amount = tonumber(ARGV[1])
if total + amount > tonumber(ARGV[2]) then return {{'0', {_F.format("total")}}} end
local s = {_F.format("total + amount")}
redis.call('SET', KEYS[1], s, 'PX', ARGV[3])
return {{'1', s}}
"""
)

_ADD_SPEND = _Lua(
    f"""
local s = {_F.format("tonumber(redis.call('GET', KEYS[1]) or '0') + tonumber(ARGV[1])")}
redis.call('SET', KEYS[1], s, 'PX', ARGV[2])
return s
"""
)


# The sliding-window log of resilience/ratelimit.py's MemoryRates, as one atomic step: expire what left the
# window, refuse while held or full, else log the request. Requests are removed one at a time, never unpacked:
# an rpm of many thousands must not overflow Lua's stack.
_RESERVE_RATE = _Lua(
    f"""
local now = tonumber(ARGV[1])
local hold = tonumber(redis.call('HGET', KEYS[2], '_hold') or '0')
if now < hold then return {{'0', {_F.format("hold")}, '1'}} end
local rpm = tonumber(ARGV[3])
local tpm = tonumber(ARGV[4])
if rpm == 0 and tpm == 0 then return {{'1', '', '0'}} end
-- The log's clock never goes back: a reading taken before a later one but run after it (a slow round trip)
-- counts at the later time, so no window of the log's times ever holds more than the limits allow.
local seen = tonumber(redis.call('HGET', KEYS[2], '_now') or '0')
if now < seen then now = seen else redis.call('HSET', KEYS[2], '_now', ARGV[1]) end
local edge = now - tonumber(ARGV[2])
local old = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', edge)
if #old > 0 then
  local gone = 0
  for _, id in ipairs(old) do
    gone = gone + (tonumber(redis.call('HGET', KEYS[2], id)) or 0)
    redis.call('HDEL', KEYS[2], id)
  end
  redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', edge)
  -- never an increment of -0 (requests logged with no tokens): Redis refuses "-0" as an integer
  if gone ~= 0 then redis.call('HINCRBY', KEYS[2], '_total', -gone) end
end
local count = redis.call('ZCARD', KEYS[1])
local total = tonumber(redis.call('HGET', KEYS[2], '_total') or '0')
local tokens = tonumber(ARGV[5])
if (rpm > 0 and count >= rpm) or (tpm > 0 and total > 0 and total + tokens > tpm) then
  local first = redis.call('ZRANGE', KEYS[1], 0, 0, 'WITHSCORES')
  return {{'0', {_F.format("tonumber(first[2]) + tonumber(ARGV[2])")}, '0'}}
end
redis.call('ZADD', KEYS[1], now, ARGV[6])
redis.call('HSET', KEYS[2], ARGV[6], tokens)
total = redis.call('HINCRBY', KEYS[2], '_total', tokens)
redis.call('PEXPIRE', KEYS[1], ARGV[7])
if redis.call('PTTL', KEYS[2]) < tonumber(ARGV[7]) then redis.call('PEXPIRE', KEYS[2], ARGV[7]) end
-- the window as this request left it: its requests and tokens, and when the oldest was logged
local first = redis.call('ZRANGE', KEYS[1], 0, 0, 'WITHSCORES')
return {{'1', {_F.format("now")}, '0', tostring(count + 1), tostring(total), first[2]}}
"""
)

_SETTLE_RATE = _Lua(
    """
local old = redis.call('HGET', KEYS[1], ARGV[1])
if not old then return 0 end
redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
redis.call('HINCRBY', KEYS[1], '_total', tonumber(ARGV[2]) - tonumber(old))
return 1
"""
)

_HOLD = _Lua(
    f"""
local hold = math.max(tonumber(redis.call('HGET', KEYS[1], '_hold') or '0'), tonumber(ARGV[1]))
redis.call('HSET', KEYS[1], '_hold', {_F.format("hold")})
if redis.call('PTTL', KEYS[1]) < tonumber(ARGV[2]) then redis.call('PEXPIRE', KEYS[1], ARGV[2]) end
return {_F.format("hold")}
"""
)


def _num(x: float) -> str:
    # repr is the shortest string that parses back to the same double, in Python and in Lua.
    return repr(float(x))


def _ttl_ms(seconds: float) -> str:
    return str(math.ceil(min(seconds, _MAX_TTL) * 1000))


def _glob_escape(text: str) -> str:
    return "".join("\\" + c if c in "*?[]\\" else c for c in text)


def _redacted_location(url: str) -> str:
    """host:port/db (or the socket path) without user or password, for logs."""
    parts = urlsplit(url)
    if parts.scheme == "unix":
        return f"unix:{parts.path}"
    db = parts.path.lstrip("/") or "0"
    return f"{parts.hostname or 'localhost'}:{parts.port or 6379}/{db}"


_SNAPSHOT_FIELDS = ["failures", "open", "retry_at", "cooldown"]


def _snapshot(key: str, row: Sequence[str | None], now: float) -> BreakerSnapshot:
    """The breaker from its hash's ``_SNAPSHOT_FIELDS``, in that order."""
    failures, open_, retry_at, cooldown = row
    count = int(failures) if failures else 0
    if open_ != "1" or not retry_at:
        return BreakerSnapshot(key, "closed", count, None)
    at = float(retry_at)
    state: BreakerStateName = "half_open" if now >= at else "open"
    return BreakerSnapshot(key, state, count, at, float(cooldown) if cooldown else None)


class RedisStateStore(StateStore):
    """A ``StateStore`` on Redis that falls back to local memory while Redis is unreachable.

    ``client_factory`` builds the client for each event loop the store is used from
    (redis.asyncio connections belong to one loop) and must decode responses;
    ``monotonic`` times the retries.
    """

    def __init__(
        self,
        client_factory: Callable[[], Redis],
        *,
        namespace: str = "taskmodels",
        operation_timeout: float = 0.05,
        retry_interval: float = 5.0,
        location: str = "redis",
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self._client_factory = client_factory
        self._namespace = namespace
        self._breaker_prefix = f"{namespace}:breaker:"
        self._timeout = operation_timeout
        self._retry_interval = retry_interval
        self._location = location
        self._monotonic = monotonic
        self._clients: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, Redis] = weakref.WeakKeyDictionary()
        self._local = MemoryStateStore()
        self._on_redis = True
        self._retry_at = 0.0
        self._probing = False

    @classmethod
    def from_settings(
        cls, settings: StateSettings, *, monotonic: Callable[[], float] = time.monotonic
    ) -> RedisStateStore:
        if settings.url is None:
            raise SettingsError("TASKMODELS_STATE__URL must be set (redis://host:port/db) when the backend is redis")
        url = settings.url.get_secret_value()
        if urlsplit(url).scheme not in {"redis", "rediss", "unix"}:
            raise SettingsError(
                "TASKMODELS_STATE__URL must start with redis://, rediss:// or unix:// "
                f"(got a URL for {_redacted_location(url)})"
            )
        timeout = settings.operation_timeout

        def client() -> Redis:
            # redis-py's own retry covers one stale pooled connection after a server restart;
            # any longer wait is cut by the store's own bound.
            return Redis.from_url(
                url,
                decode_responses=True,
                socket_timeout=timeout,
                socket_connect_timeout=timeout,
                retry=Retry(NoBackoff(), 1),
                health_check_interval=0,
            )

        return cls(
            client,
            namespace=settings.namespace,
            operation_timeout=timeout,
            retry_interval=settings.retry_interval,
            location=_redacted_location(url),
            monotonic=monotonic,
        )

    @property
    def on_redis(self) -> bool:
        """False while calls are served from local memory because Redis was lost."""
        return self._on_redis

    @property
    def location(self) -> str:
        """Where the server is, without credentials."""
        return self._location

    # --- keys -------------------------------------------------------------------------

    def breaker_key(self, key: str) -> str:
        return self._breaker_prefix + key

    def spend_key(self, scope: str, *, window: float, now: float) -> str:
        return f"{self._namespace}:spend:{scope}:{_num(window_start(now, window))}"

    # --- StateStore -------------------------------------------------------------------

    async def admit(self, key: str, *, now: float, probe_lease: float) -> Admission:
        async def remote(r: Redis) -> Admission:
            ttl = _ttl_ms(max(probe_lease * 10, _MIN_BREAKER_TTL))
            allowed, probe, retry_at = await _ADMIT(r, [self.breaker_key(key)], [_num(now), _num(probe_lease), ttl])
            return Admission(allowed == "1", probe == "1", float(retry_at) if retry_at else None)

        return await self._call(remote, lambda m: m.admit(key, now=now, probe_lease=probe_lease))

    async def record_success(self, key: str, *, now: float) -> BreakerSnapshot:
        async def remote(r: Redis) -> BreakerSnapshot:
            await _RECORD_SUCCESS(r, [self.breaker_key(key)], [])
            return BreakerSnapshot(key, "closed")

        return await self._call(remote, lambda m: m.record_success(key, now=now))

    async def record_failure(
        self, key: str, *, now: float, threshold: int, cooldown: float, cooldown_max: float | None = None
    ) -> BreakerSnapshot:
        async def remote(r: Redis) -> BreakerSnapshot:
            # The key outlives the longest cooldown many times over, so a long outage keeps its doubled cooldown.
            ttl = _ttl_ms(max(max(cooldown, cooldown_max or 0.0) * 10, _MIN_BREAKER_TTL))
            cap = "" if cooldown_max is None else _num(cooldown_max)
            failures, open_, retry_at, current = await _RECORD_FAILURE(
                r, [self.breaker_key(key)], [_num(now), str(threshold), _num(cooldown), cap, ttl]
            )
            return _snapshot(key, [failures, open_, retry_at, current], now)

        return await self._call(
            remote,
            lambda m: m.record_failure(key, now=now, threshold=threshold, cooldown=cooldown, cooldown_max=cooldown_max),
        )

    async def breaker(self, key: str, *, now: float) -> BreakerSnapshot:
        async def remote(r: Redis) -> BreakerSnapshot:
            row: list[str | None] = await r.hmget(self.breaker_key(key), _SNAPSHOT_FIELDS)  # type: ignore[assignment]
            return _snapshot(key, row, now)

        return await self._call(remote, lambda m: m.breaker(key, now=now))

    async def breakers(self, *, now: float) -> Mapping[str, BreakerSnapshot]:
        async def remote(r: Redis) -> Mapping[str, BreakerSnapshot]:
            keys = [k async for k in r.scan_iter(match=_glob_escape(self._breaker_prefix) + "*", count=500)]
            if not keys:
                return {}
            async with r.pipeline(transaction=False) as pipe:
                for k in keys:
                    pipe.hmget(k, _SNAPSHOT_FIELDS)
                rows = await pipe.execute()
            found: dict[str, BreakerSnapshot] = {}
            for k, row in zip(keys, rows, strict=True):
                if row[0] is None and row[1] is None:
                    continue  # expired or closed between SCAN and HMGET
                name = k[len(self._breaker_prefix) :]
                found[name] = _snapshot(name, row, now)
            return found

        return await self._call(remote, lambda m: m.breakers(now=now))

    async def reserve_spend(
        self, scope: str, amount: float, *, limit: float, window: float, now: float
    ) -> SpendDecision:
        async def remote(r: Redis) -> SpendDecision:
            accepted, total = await _RESERVE_SPEND(
                r, [self.spend_key(scope, window=window, now=now)], [_num(amount), _num(limit), self._spend_ttl(window)]
            )
            return SpendDecision(accepted == "1", float(total))

        return await self._call(remote, lambda m: m.reserve_spend(scope, amount, limit=limit, window=window, now=now))

    async def add_spend(self, scope: str, amount: float, *, window: float, now: float) -> float:
        async def remote(r: Redis) -> float:
            total = await _ADD_SPEND(
                r, [self.spend_key(scope, window=window, now=now)], [_num(amount), self._spend_ttl(window)]
            )
            return float(total)

        return await self._call(remote, lambda m: m.add_spend(scope, amount, window=window, now=now))

    async def spend(self, scope: str, *, window: float, now: float) -> float:
        async def remote(r: Redis) -> float:
            total = await r.get(self.spend_key(scope, window=window, now=now))
            return float(total) if total else 0.0

        return await self._call(remote, lambda m: m.spend(scope, window=window, now=now))

    def rate_keys(self, key: str) -> tuple[str, str]:
        log = f"{self._namespace}:rate:{key}"
        return log, log + ":t"

    async def reserve_rate(
        self, key: str, ident: str, *, tokens: int, rpm: int | None, tpm: int | None, window: float, now: float
    ) -> RateDecision:
        async def remote(r: Redis) -> RateDecision:
            args = [_num(now), _num(window), str(rpm or 0), str(tpm or 0), str(tokens), ident, _ttl_ms(window * 2)]
            accepted, retry_at, held, *left = await _RESERVE_RATE(r, self.rate_keys(key), args)
            if accepted == "1":
                if not left:  # no limits: only the hold was checked, nothing logged
                    return RateDecision(accepted=True)
                requests, tokens_in, oldest = left
                at = float(retry_at)
                return RateDecision(True, None, False, at, int(requests), int(tokens_in), float(oldest))
            return RateDecision(accepted=False, retry_at=float(retry_at), held=held == "1")

        return await self._call(
            remote, lambda m: m.reserve_rate(key, ident, tokens=tokens, rpm=rpm, tpm=tpm, window=window, now=now)
        )

    async def settle_rate(self, key: str, ident: str, *, tokens: int, window: float, now: float) -> None:
        async def remote(r: Redis) -> None:
            await _SETTLE_RATE(r, [self.rate_keys(key)[1]], [ident, str(tokens)])

        await self._call(remote, lambda m: m.settle_rate(key, ident, tokens=tokens, window=window, now=now))

    async def hold(self, key: str, until: float, *, now: float) -> float:
        async def remote(r: Redis) -> float:
            ttl = _ttl_ms(max(until - now, 0.0) + _SPEND_TTL_MARGIN)
            return float(await _HOLD(r, [self.rate_keys(key)[1]], [_num(until), ttl]))

        return await self._call(remote, lambda m: m.hold(key, until, now=now))

    async def rate(self, key: str, *, window: float, now: float) -> RateSnapshot:
        async def remote(r: Redis) -> RateSnapshot:
            log, tokens = self.rate_keys(key)
            edge = f"({_num(now - window)}"
            async with r.pipeline(transaction=False) as pipe:
                pipe.zcount(log, edge, "+inf")
                pipe.hmget(tokens, ["_total", "_hold"])
                pipe.zrangebyscore(log, edge, "+inf", start=0, num=1, withscores=True)
                count, (total, hold), first = await pipe.execute()
            held = float(hold) if hold and float(hold) > now else None
            oldest = float(first[0][1]) if first else None
            # '_total' still counts requests that left the window until the next reservation expires them.
            return RateSnapshot(int(count), int(total or 0) if count else 0, held, oldest)

        return await self._call(remote, lambda m: m.rate(key, window=window, now=now))

    async def aclose(self) -> None:
        """Close this loop's connections; clients of loops already gone are dropped with them."""
        clients = list(self._clients.items())
        self._clients.clear()
        loop = asyncio.get_running_loop()
        for owner, client in clients:
            if owner is loop:
                try:
                    async with asyncio.timeout(max(self._timeout, 1.0)):
                        await client.aclose()
                except Exception:  # closing a dead connection must not fail shutdown  # noqa: BLE001 - no call may fail because the shared store did
                    _log.debug("taskmodels.state.redis_close_failed", redis=self._location)

    # --- fallback ---------------------------------------------------------------------

    def _spend_ttl(self, window: float) -> str:
        return _ttl_ms(window + max(_SPEND_TTL_MARGIN, window * 0.1))

    def _client(self) -> Redis:
        loop = asyncio.get_running_loop()
        client = self._clients.get(loop)
        if client is None:
            client = self._clients[loop] = self._client_factory()
        return client

    def _should_try_redis(self) -> bool:
        if self._on_redis:
            return True
        if self._probing or self._monotonic() < self._retry_at:
            return False
        # One call at a time finds out whether Redis is back; the others stay local meanwhile.
        self._probing = True
        return True

    async def _call(
        self, remote: Callable[[Redis], Awaitable[T]], local: Callable[[MemoryStateStore], Awaitable[T]]
    ) -> T:
        if self._should_try_redis():
            probing = not self._on_redis
            try:
                async with asyncio.timeout(self._timeout):
                    result = await remote(self._client())
            except Exception as exc:  # no call may fail because the shared store did  # noqa: BLE001 - closing a dead connection must not fail shutdown
                self._lost(exc)
            else:
                self._restored()
                return result
            finally:
                if probing:
                    self._probing = False
        return await local(self._local)

    def _lost(self, exc: Exception) -> None:
        self._retry_at = self._monotonic() + self._retry_interval
        if self._on_redis:
            self._on_redis = False
            # The error's class only: its text may carry connection details.
            _log.warning(
                "taskmodels.state.redis_lost",
                redis=self._location,
                error=type(exc).__name__,
                fallback="memory",
                retry_interval=self._retry_interval,
            )

    def _restored(self) -> None:
        if not self._on_redis:
            self._on_redis = True
            _log.info("taskmodels.state.redis_restored", redis=self._location)

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self._location!r}, namespace={self._namespace!r}, on_redis={self._on_redis})"
