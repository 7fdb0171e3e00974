"""The Redis view of current tiers: key layout, ordered writes, write-behind backlog, rebuild."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import secrets
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from itertools import islice
from typing import TYPE_CHECKING, Any, Protocol

import msgspec
import redis
import redis.asyncio
from kafka import KafkaConsumer, TopicPartition
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff

from models.errors import InvalidTierRecordError
from streams.kafka.clients import assign_from_beginning, committed_reader, read_to_end

if TYPE_CHECKING:
    from prometheus_client import Counter, Gauge
    from rich.progress import Progress

log = logging.getLogger("tierstream.redis")

DEFAULT_PREFIX = "tierstream:v1"
ERASED_TTL_S = 7 * 86400
BATCH_SIZE = 500
MAX_BACKLOG = 1_000_000
_WIDTH = 20  # digits of each version part: any non-negative int64 fits
_LAST_SEQUENCE = "9" * _WIDTH
GENERATION_CHECK_S = 1.0  # how often a worker's flush looks at the generation marker
REBUILD_LEASE_S = 30.0  # a rebuilding worker renews its lock at every check; a dead one's expires
REBUILD_RETRY_S = 10.0  # after a failed rebuild, before this worker tries again

# Applies a batch of records and erasures in order, each only if its version is newer than both
# the stored record and the erased marker; versions are fixed-width digit strings, so string order
# is numeric order. One call per batch: the changes travel as one JSON argument, which costs the
# client a fraction of packing and parsing a command per change.
# KEYS: per change its customer hash and erased marker. ARGV: tier-set key prefix, erased-marker
# TTL, then a JSON array of changes [customer id, version (may be '' for an erasure: then the
# stored incarnation is erased), kind ('record' or 'erase'), new tier ('' = none), the hash's
# field/value pairs]. Returns per change 1 if applied, else 0.
# Tier-set keys are built here, so the view needs a single Redis server, not a Cluster.
APPLY_LUA = f"""
local sets, ttl = ARGV[1], tonumber(ARGV[2])
local function apply(hash, marker, id, version, kind, tier, fields)
  local stored = redis.call('HGET', hash, 'version')
  local erased = redis.call('HGET', marker, 'version')
  if kind == 'erase' and version == '' then
    if not stored then return 0 end
    version = string.sub(stored, 1, {_WIDTH}) .. ':{_LAST_SEQUENCE}'
  end
  if (stored and version <= stored) or (erased and version <= erased) then return 0 end
  local old = redis.call('HGET', hash, 'tier')
  if old and old ~= '' and old ~= tier then redis.call('SREM', sets .. old, id) end
  if kind == 'erase' then
    redis.call('DEL', hash)
    redis.call('HSET', marker, 'version', version)
    redis.call('EXPIRE', marker, ttl)
    return 1
  end
  redis.call('DEL', marker)
  redis.call('HSET', hash, unpack(fields))
  if tier ~= '' then redis.call('SADD', sets .. tier, id) end
  return 1
end
local applied = {{}}
for i, c in ipairs(cjson.decode(ARGV[3])) do
  applied[i] = apply(KEYS[2 * i - 1], KEYS[2 * i], c[1], c[2], c[3], c[4], c[5])
end
return applied
"""

# The view's generation: a hash {token, rebuilt} that lives as long as the view's data. Redis
# restarted empty, flushed or failed over to an empty replica loses it with everything else, so a
# token that is gone or another one than last seen means the view was emptied since. A missing
# marker is created (SET NX semantics: the first caller's token wins) with rebuilt = 0; a
# rebuild from `customer-tiers` that started after the token was set marks it rebuilt.
# KEYS: the generation hash, the rebuild lock. ARGV: a new token, the lock owner ('' = do not
# take the lock), the lock's lease in ms. While the generation is not rebuilt, the owner takes
# the lock if free, or renews it if held. Returns {token, rebuilt, created (0/1), locked (0/1)}.
GENERATION_LUA = """
local token, created, locked = redis.call('HGET', KEYS[1], 'token'), 0, 0
if not token then
  token, created = ARGV[1], 1
  redis.call('HSET', KEYS[1], 'token', token, 'rebuilt', '0')
end
local rebuilt = redis.call('HGET', KEYS[1], 'rebuilt') or '0'
if rebuilt ~= '1' and ARGV[2] ~= '' then
  if redis.call('SET', KEYS[2], ARGV[2], 'NX', 'PX', ARGV[3]) then
    locked = 1
  elseif redis.call('GET', KEYS[2]) == ARGV[2] then
    redis.call('PEXPIRE', KEYS[2], ARGV[3])
    locked = 1
  end
end
return {token, rebuilt, created, locked}
"""

# Marks the generation rebuilt if it is still the one the rebuild started in; releases the lock
# if held by the owner. KEYS: the generation hash, the rebuild lock. ARGV: token ('' = mark
# nothing), lock owner ('' = none). Returns 1 if marked.
REBUILT_LUA = """
local marked = 0
if ARGV[1] ~= '' and redis.call('HGET', KEYS[1], 'token') == ARGV[1] then
  redis.call('HSET', KEYS[1], 'rebuilt', '1')
  marked = 1
end
if ARGV[2] ~= '' and redis.call('GET', KEYS[2]) == ARGV[2] then redis.call('DEL', KEYS[2]) end
return marked
"""


@dataclass(frozen=True)
class Keys:
    """Every Redis key of the view; bump the prefix's version to change the layout."""

    prefix: str = DEFAULT_PREFIX

    def customer(self, customer_id: str) -> str:
        return f"{self.prefix}:customer:{customer_id}"

    def tier(self, tier: str) -> str:
        return f"{self.prefix}:tier:{tier}"

    def erased(self, customer_id: str) -> str:
        return f"{self.prefix}:erased:{customer_id}"

    def generation(self) -> str:
        return f"{self.prefix}:generation"

    def rebuild_lock(self) -> str:
        return f"{self.prefix}:rebuild-lock"


def version_of(created_at: int, sequence: int) -> str:
    """Orders a customer's incarnations (first-seen instant), then its records within one."""
    return f"{created_at:0{_WIDTH}d}:{sequence:0{_WIDTH}d}"


@dataclass(frozen=True)
class TierRecord:
    """One customer's current tier, as its `customer-tiers` record holds it (plus
    `created_at`)."""

    customer_id: str
    tier: str | None
    since: str | None
    churn: bool
    churn_rule: str | None
    sequence: int
    created_at: int
    as_of: str
    axes: str = "{}"   # the record's `axes` as JSON (absent in records of older workers)

    @property
    def version(self) -> str:
        return version_of(self.created_at, self.sequence)

    def fields(self) -> dict[str, str]:
        return {"tier": self.tier or "", "since": self.since or "", "churn": str(int(self.churn)),
                "churn_rule": self.churn_rule or "", "sequence": str(self.sequence),
                "created_at": str(self.created_at), "as_of": self.as_of,
                "version": self.version, "axes": self.axes}


@dataclass(frozen=True)
class Erasure:
    """A tombstone; `created_at` of the erased incarnation when known, else the stored one's."""

    customer_id: str
    created_at: int | None = None

    @property
    def version(self) -> str:
        return "" if self.created_at is None else f"{self.created_at:0{_WIDTH}d}:{_LAST_SEQUENCE}"


Change = TierRecord | Erasure


def parse_record(customer_id: str, value: bytes | Mapping[str, Any]) -> TierRecord:
    """The record for `customer_id` from `customer-tiers` bytes or their decoded mapping."""
    try:
        data = json.loads(value) if isinstance(value, bytes | bytearray) else dict(value)
    except (ValueError, TypeError) as error:
        raise InvalidTierRecordError(f"customer {customer_id}: record is not JSON: {error}") \
            from error
    if not isinstance(data, dict):
        raise InvalidTierRecordError(f"customer {customer_id}: record is {data!r}, expected "
                                     "the JSON object of a customer-tiers record")
    if data.get("customer_id", customer_id) != customer_id:
        raise InvalidTierRecordError(f"record of customer {data['customer_id']!r} under key "
                                     f"{customer_id!r}: the key must be the customer id")
    _expect(customer_id, data, {"created_at": int, "sequence": int, "churn": bool,
                                "as_of": str, "tier": str | None, "since": str | None,
                                "churn_rule": str | None})
    axes = data.get("axes", {})
    if not isinstance(axes, dict) or not all(isinstance(v, str) for v in axes.values()):
        raise InvalidTierRecordError(f"customer {customer_id}: field 'axes' is {axes!r}, "
                                     f"expected an object of class names by axis")
    return tier_record(customer_id, data)


def tier_record(customer_id: str, data: Mapping[str, Any]) -> TierRecord:
    """The record of the fields of a `customer-tiers` record as checked by parse_record, or
    as the worker has them (models.outputs.tier_fields: valid, never written and read)."""
    return TierRecord(customer_id, data["tier"], data["since"], data["churn"],
                      data["churn_rule"], data["sequence"], data["created_at"], data["as_of"],
                      json.dumps(data.get("axes", {}), ensure_ascii=False, sort_keys=True))


def _expect(customer_id: str, data: Mapping[str, Any], types: Mapping[str, Any]) -> None:
    for name, kind in types.items():
        value = data.get(name)
        wrong_bool = isinstance(value, bool) and kind is int
        if name not in data or not isinstance(value, kind) or wrong_bool:
            expected = getattr(kind, "__name__", kind)
            raise InvalidTierRecordError(f"customer {customer_id}: field {name!r} is "
                                         f"{value!r}, expected {expected}")
    for name in ("created_at", "sequence"):
        if data[name] < 0:
            raise InvalidTierRecordError(f"customer {customer_id}: field {name!r} is "
                                         f"{data[name]}, expected a non-negative integer")


def _apply_args(batch: list[Change], keys: Keys, erased_ttl_s: int
                ) -> tuple[list[str], list[str | bytes]]:
    """KEYS and ARGV of APPLY_LUA for a batch of changes."""
    names, changes = [], []
    for change in batch:
        cid = change.customer_id
        names += (keys.customer(cid), keys.erased(cid))
        if isinstance(change, Erasure):
            changes.append((cid, change.version, "erase", "", ()))
        else:
            pairs = [part for item in change.fields().items() for part in item]
            changes.append((cid, change.version, "record", change.tier or "", pairs))
    return names, [keys.tier(""), str(erased_ttl_s), msgspec.json.encode(changes)]


def _newer(pending: Change | None, change: Change) -> Change:
    """What the backlog keeps for a customer when `change` is offered after `pending`."""
    if pending is None:
        return change
    if isinstance(change, Erasure) and change.created_at is None:
        change = Erasure(change.customer_id, pending.created_at)  # erase what was pending too
    if not pending.version or not change.version:
        return change  # nothing to compare: the order of the offers decides
    return change if change.version > pending.version else pending


class RedisMetrics(Protocol):
    """The part of `streams.worker.metrics.Metrics` the view updates."""

    redis_errors: Counter
    redis_backlog: Gauge
    redis_resets: Counter
    redis_rebuilding: Gauge


Rebuilder = Callable[[], "RebuildResult"]  # a whole-view rebuild, run in a thread of its own


class RedisView:
    """Write-behind view: `offer` coalesces per customer, `flush` writes; Redis down loses nothing.

    The backlog keeps one change per customer (the newest), so it is bounded by the customers this
    worker owns; past `max_backlog` the oldest are dropped, and only a rebuild restores them.

    Redis losing its data (restarted empty, flushed, failed over to an empty replica) shows as the
    generation marker gone or replaced (GENERATION_LUA), which `flush` looks at every
    `check_interval_s`: the view counts the reset and, given a `rebuilder`, rebuilds the whole
    view from `customer-tiers` in a thread while the live writes go on; one worker at a time
    (the rebuild lock), the others wait for the generation to be marked rebuilt.
    """

    def __init__(self, client: redis.asyncio.Redis, *, prefix: str = DEFAULT_PREFIX,
                 batch_size: int = BATCH_SIZE, max_backlog: int = MAX_BACKLOG,
                 erased_ttl_s: int = ERASED_TTL_S, metrics: RedisMetrics | None = None,
                 rebuilder: Rebuilder | None = None,
                 check_interval_s: float = GENERATION_CHECK_S,
                 lease_s: float = REBUILD_LEASE_S, retry_s: float = REBUILD_RETRY_S) -> None:
        self.client, self.keys = client, Keys(prefix)
        self.batch_size, self.max_backlog, self.erased_ttl_s = batch_size, max_backlog, erased_ttl_s
        self.metrics = metrics
        self.script = client.register_script(APPLY_LUA)
        self.errors = self.dropped = self.resets = self.rebuilds = 0
        self._backlog: OrderedDict[str, Change] = OrderedDict()
        self._failing = self._flushing = self._dropping = False
        self.rebuilder, self.check_interval_s = rebuilder, check_interval_s
        self.lease_s, self.retry_s = lease_s, retry_s
        self._generation_script = client.register_script(GENERATION_LUA)
        self._rebuilt_script = client.register_script(REBUILT_LUA)
        self.generation: str | None = None  # the token last seen; None before the first check
        self.rebuilt = False  # whether that generation was rebuilt (by any worker)
        self._owner = secrets.token_hex(8)  # this view's name on the rebuild lock
        self._next_check = self._retry_at = 0.0
        self._rebuild: asyncio.Task | None = None

    @classmethod
    def from_url(cls, url: str, *, timeout_s: float = 2.0, kafka: Mapping[str, Any] | None = None,
                 topic: str | None = None, **options: Any) -> RedisView:
        """A view on its own client; the backlog does the retrying, so the client retries once.
        With `kafka` (kafka-python settings) and `topic` (`customer-tiers`) it rebuilds itself
        from the topic when Redis lost its data."""
        client = redis.asyncio.Redis.from_url(
            url, socket_timeout=timeout_s, socket_connect_timeout=timeout_s,
            retry=Retry(NoBackoff(), 1))
        if kafka is not None and topic is not None:
            options.setdefault("rebuilder", _rebuilder(
                url, kafka, topic, options.get("prefix", DEFAULT_PREFIX), timeout_s))
        return cls(client, **options)

    async def aclose(self) -> None:
        if self._rebuild is not None:
            self._rebuild.cancel()  # its thread runs on to its end, as a daemon
        await self.client.aclose()

    @property
    def backlog(self) -> int:
        return len(self._backlog)

    def pending(self) -> list[str]:
        """The customers waiting to be written, the longest waiting first."""
        return list(self._backlog)

    def offer(self, customer_id: str, record: TierRecord | bytes | Mapping[str, Any] | None,
              created_at: int | None = None) -> None:
        """Queue a `customer-tiers` record (None: the erasure tombstone; bytes or a mapping are
        checked first) for the next flush.

        An erasure given the `created_at` of the incarnation it erases leaves an erased marker
        even where Redis holds nothing of the customer (an emptied Redis being rebuilt), so an
        older record written after it (by the rebuild) does not bring the customer back."""
        change = (Erasure(customer_id, created_at) if record is None else record
                  if isinstance(record, TierRecord) else parse_record(customer_id, record))
        self._backlog[customer_id] = _newer(self._backlog.pop(customer_id, None), change)
        while len(self._backlog) > self.max_backlog:
            self._backlog.popitem(last=False)
            self._drop()
        self._gauge()

    async def flush(self) -> int:
        """Write the backlog as it is now; returns how many changes left it. Never raises on a
        Redis failure: the backlog stays, the error is counted, and the next flush retries."""
        if self._flushing:
            return 0
        self._flushing, written, failed = True, 0, False
        try:
            for _ in range(-(-len(self._backlog) // self.batch_size)):
                batch = list(islice(self._backlog.values(), self.batch_size))
                removed = await self._write(batch) if batch else None
                if removed is None:
                    failed = True
                    break
                written += removed
            if not failed and time.monotonic() >= self._next_check:
                await self._check_generation()
        finally:
            self._flushing = False
            self._gauge()
        return written

    async def _check_generation(self) -> None:
        """Look at the generation marker (one round trip): a token other than the last one seen
        means Redis lost the view since; while it is not rebuilt, rebuild it (or wait for the
        worker holding the rebuild lock)."""
        self._next_check = time.monotonic() + self.check_interval_s
        running = self._rebuild is not None
        may_rebuild = self.rebuilder is not None and (running or time.monotonic() >= self._retry_at)
        try:
            token, rebuilt, _, locked = await self._generation_script(
                keys=[self.keys.generation(), self.keys.rebuild_lock()],
                args=[secrets.token_hex(8), self._owner if may_rebuild else "",
                      int(self.lease_s * 1000)])
        except (redis.RedisError, OSError):
            return  # the next write fails too and is counted; the next check looks again
        token, rebuilt = _text(token), _text(rebuilt) == "1"
        if token != self.generation:
            self._new_generation(token, rebuilt)
        elif rebuilt and not self.rebuilt:
            log.info("redis view generation %s rebuilt", token)
        self.generation, self.rebuilt = token, rebuilt
        if self.metrics is not None:
            self.metrics.redis_rebuilding.set(0 if rebuilt else 1)
        if not rebuilt and locked and not running:
            self._rebuild = asyncio.ensure_future(self._rebuild_view(token))

    def _new_generation(self, token: str, rebuilt: bool) -> None:
        if self.generation is not None:
            self.resets += 1
            if self.metrics is not None:
                self.metrics.redis_resets.inc()
            log.error("redis view lost: generation %s is gone from Redis (now %s), so Redis "
                      "restarted empty, was flushed or failed over; %s", self.generation, token,
                      "already rebuilt by another worker" if rebuilt else
                      "rebuilding it from customer-tiers" if self.rebuilder is not None else
                      "run `tierstream redis rebuild`")
        elif not rebuilt:
            log.warning("redis view generation %s not rebuilt yet (a new or emptied Redis, or a "
                        "view from before generation markers): %s", token,
                        "rebuilding it from customer-tiers" if self.rebuilder is not None else
                        "run `tierstream redis rebuild`")
        else:
            log.info("redis view generation %s", token)

    async def _rebuild_view(self, token: str) -> None:
        """Rebuild the whole view in a thread; the rebuild marks the generation rebuilt."""
        assert self.rebuilder is not None
        started = time.monotonic()
        try:
            result = await _in_thread(self.rebuilder)
        except asyncio.CancelledError:
            raise
        except Exception as error:  # any failure (Kafka, Redis): logged, tried again later
            self._retry_at = time.monotonic() + self.retry_s
            log.error("redis view rebuild of generation %s failed (%s: %s); trying again in "
                      "%.0fs", token, type(error).__name__, error, self.retry_s)
        else:
            self.rebuilds += 1
            self._next_check = 0.0  # see the generation rebuilt at the next flush
            log.warning("redis view generation %s rebuilt from customer-tiers in %.1fs: %s",
                        token, time.monotonic() - started, result)
        finally:
            self._rebuild = None
        with contextlib.suppress(redis.RedisError, OSError):  # else the lease runs out
            await self._rebuilt_script(keys=[self.keys.generation(), self.keys.rebuild_lock()],
                                       args=["", self._owner])

    async def _write(self, batch: list[Change]) -> int | None:
        """Apply a batch; how many changes left the backlog, or None if Redis failed."""
        try:
            keys, args = _apply_args(batch, self.keys, self.erased_ttl_s)
            await self.script(keys=keys, args=args)
        except (redis.RedisError, OSError) as error:
            self._error(error)
            return None
        # An offer during the write may have replaced a change: that newer one stays.
        done = [c.customer_id for c in batch if self._backlog.get(c.customer_id) is c]
        for customer_id in done:
            del self._backlog[customer_id]
        if self._failing:
            log.warning("redis view reachable again; catching up, %d left", len(self._backlog))
        self._failing = self._dropping = False
        return len(done)

    async def tier_page(self, tier: str, cursor: int, count: int) -> tuple[list[str], int]:
        """One page of the customers in a tier (SSCAN of its set: a customer in the tier for
        the whole scan is listed at least once, rarely twice; `count` is a hint) and the cursor
        of the next, 0 at the end."""
        cursor, members = await self.client.sscan(self.keys.tier(tier), cursor=cursor,
                                                  count=count)
        return sorted(_text(member) for member in members), cursor

    async def lookup(self, customer_id: str) -> dict[str, Any] | None:
        """The stored record of a customer, typed as in `customer-tiers`, or None."""
        stored = await self.client.hgetall(self.keys.customer(customer_id))
        return decode_hash(customer_id, stored) if stored else None

    def _error(self, error: Exception) -> None:
        self.errors += 1
        if self.metrics is not None:
            self.metrics.redis_errors.inc()
        if not self._failing:
            log.warning("redis view write failed (%s: %s); keeping %d changes for the next flush",
                        type(error).__name__, error, len(self._backlog))
        self._failing = True

    def _drop(self) -> None:
        if not self._dropping:
            log.error("redis view backlog over %d customers: dropping the oldest; run "
                      "`tierstream redis rebuild` once Redis is back", self.max_backlog)
        self._dropping = True
        self.dropped += 1

    def _gauge(self) -> None:
        if self.metrics is not None:
            self.metrics.redis_backlog.set(len(self._backlog))


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


def _in_thread(work: Callable[[], Any]) -> asyncio.Future:
    """Run `work` in a daemon thread (one that never holds up the process's exit, unlike the
    loop's executor threads) and await its result."""
    loop = asyncio.get_running_loop()
    future = loop.create_future()

    def settle(result: Any, error: BaseException | None) -> None:
        if future.done():
            return
        if error is None:
            future.set_result(result)
        else:
            future.set_exception(error)

    def run() -> None:
        result, error = None, RuntimeError("the rebuild thread was stopped")
        try:
            result, error = work(), None
        except Exception as caught:  # handed to the awaiting task
            error = caught
        finally:
            with contextlib.suppress(RuntimeError):  # the loop is closed: nobody waits any more
                loop.call_soon_threadsafe(settle, result, error)

    threading.Thread(target=run, name="tierstream-redis-rebuild", daemon=True).start()
    return future


def _rebuilder(url: str, kafka: Mapping[str, Any], topic: str, prefix: str,
               timeout_s: float) -> Rebuilder:
    """A rebuild of the view under `prefix` from `topic`, on a synchronous client of its own."""
    def run() -> RebuildResult:
        client = redis.Redis.from_url(url, socket_timeout=max(timeout_s, 10.0),
                                      socket_connect_timeout=timeout_s)
        with client:
            return rebuild(kafka, topic, client, prefix=prefix)
    return run


def decode_hash(customer_id: str, stored: Mapping[Any, Any]) -> dict[str, Any]:
    """A customer hash (bytes or str) back in the shape of the `customer-tiers` record."""
    h = {(k.decode() if isinstance(k, bytes) else k): (v.decode() if isinstance(v, bytes) else v)
         for k, v in stored.items()}
    return {"customer_id": customer_id, "tier": h["tier"] or None, "since": h["since"] or None,
            "churn": h["churn"] == "1", "churn_rule": h["churn_rule"] or None,
            "sequence": int(h["sequence"]), "created_at": int(h["created_at"]),
            "as_of": h["as_of"], "axes": json.loads(h.get("axes") or "{}"),
            "version": h["version"]}


@dataclass(frozen=True)
class RebuildResult:
    """What a rebuild did; `skipped` are changes not newer than what Redis held."""

    read: int = 0
    applied: int = 0
    erased: int = 0
    skipped: int = 0
    invalid: int = 0


def rebuild(kafka: Mapping[str, Any], topic: str, client: redis.Redis, *,
            prefix: str = DEFAULT_PREFIX, progress: Progress | None = None,
            batch_size: int = BATCH_SIZE, erased_ttl_s: int = ERASED_TTL_S,
            idle_timeout_s: float = 30.0) -> RebuildResult:
    """Apply the compacted topic, from its beginning to its end offsets at the start, to Redis.

    `kafka` holds the kafka-python connection settings (streams.kafka.clients). Ordered like live
    writes, so it can run against a live view; into an empty prefix it gives exactly the topic's
    state. Redis errors propagate: a rebuild is run by an operator, or by a worker that found
    the view emptied (RedisView). The view's generation marker, read (or created) before the end
    offsets are taken, is marked rebuilt at the end if it is still there: every record written
    to Kafka before the view was emptied is then in it.
    """
    keys = Keys(prefix)
    generation = [keys.generation(), keys.rebuild_lock()]
    token, _, _, _ = client.register_script(GENERATION_LUA)(
        keys=generation, args=[secrets.token_hex(8), "", 0])
    consumer = committed_reader(kafka, auto_offset_reset="earliest")
    try:
        ends = assign_from_beginning(consumer, topic, kafka["bootstrap_servers"])
        starts = consumer.beginning_offsets(list(ends))
        total = sum(ends[tp] - starts[tp] for tp in ends)
        task = None if progress is None else progress.add_task(f"records of {topic}", total=total)
        writer = _SyncWriter(client, keys, erased_ttl_s, batch_size)
        # A tombstone erases the incarnation of the record before it, not a newer one that a
        # live view may already hold: one int per customer, the price of rebuilding in place.
        incarnations: dict[str, int] = {}
        # A tombstone whose record was compacted away erases whatever Redis holds; it waits for
        # the end, and is forgotten if a record of the customer (a new incarnation) follows.
        unknown: dict[str, Erasure] = {}
        counts, batch = {"read": 0, "invalid": 0}, []
        for record in read_to_end(consumer, ends, idle_timeout_s):
            counts["read"] += 1
            change = _change_of(record, incarnations)
            counts["invalid"] += change is None
            if isinstance(change, Erasure) and change.created_at is None:
                unknown[change.customer_id] = change
            elif change is not None:
                unknown.pop(change.customer_id, None)
                batch.append(change)
            if len(batch) >= batch_size:
                writer.write(batch)
                batch = []
            if task is not None:
                progress.update(task, completed=_position(consumer, starts))
        writer.write([*batch, *unknown.values()])
        if task is not None:
            progress.update(task, completed=total)
        client.register_script(REBUILT_LUA)(keys=generation, args=[_text(token), ""])
        return RebuildResult(**counts, **writer.counts)
    finally:
        consumer.close()


def _position(consumer: KafkaConsumer, starts: dict[TopicPartition, int]) -> int:
    return sum(consumer.position(tp) - start for tp, start in starts.items())


def _change_of(record: Any, incarnations: dict[str, int]) -> Change | None:
    """The change a `customer-tiers` message carries; None (logged) when it is not one."""
    try:
        customer_id = record.key.decode()
        if record.value is None:
            return Erasure(customer_id, incarnations.pop(customer_id, None))
        change = parse_record(customer_id, record.value)
    except (AttributeError, UnicodeDecodeError, InvalidTierRecordError) as error:
        log.warning("skipping %s[%s]@%s: %s", record.topic, record.partition, record.offset,
                    error)
        return None
    incarnations[customer_id] = change.created_at
    return change


class _SyncWriter:
    """Applies changes with APPLY_LUA, `batch_size` per call (a script call blocks Redis while
    it runs), counting the outcomes."""

    def __init__(self, client: redis.Redis, keys: Keys, erased_ttl_s: int,
                 batch_size: int) -> None:
        self.client, self.keys, self.erased_ttl_s = client, keys, erased_ttl_s
        self.batch_size = batch_size
        self.script = client.register_script(APPLY_LUA)
        self.counts = {"applied": 0, "erased": 0, "skipped": 0}

    def write(self, changes: list[Change]) -> None:
        for start in range(0, len(changes), self.batch_size):
            batch = changes[start:start + self.batch_size]
            keys, args = _apply_args(batch, self.keys, self.erased_ttl_s)
            results = self.script(keys=keys, args=args)
            for change, applied in zip(batch, results, strict=True):
                outcome = "skipped" if not applied else \
                    "erased" if isinstance(change, Erasure) else "applied"
                self.counts[outcome] += 1
