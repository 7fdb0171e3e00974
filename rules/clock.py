"""Per-partition event-time clocks of the streaming runtime.

The engine's clock is event time. Each input partition's clock is the latest `occurred_at` seen
on it (the watermark). A partition that has seen no event for `idle_after` of wall-clock time
follows the wall clock instead, so time-driven changes (downgrades, churn warnings) still happen
when a partition goes quiet. With events flowing, time moves only with the events, which is what
makes a live run equal a replay of the same events.
"""

from __future__ import annotations

from collections.abc import Iterable


class PartitionClocks:
    """Event-time watermark per partition, with the wall-clock rule for idle partitions."""

    def __init__(self, idle_after: int) -> None:
        self.idle_after = idle_after
        self._watermark: dict[int, int] = {}
        self._last_event_wall: dict[int, int] = {}
        self._last_tick_wall: dict[int, int] = {}

    def observe(self, partition: int, event_time: int, wall: int) -> None:
        self._watermark[partition] = max(self._watermark.get(partition, event_time), event_time)
        self._last_event_wall[partition] = wall

    def busy(self, partition: int, wall: int) -> None:
        """The partition is not quiet: an input message of it was read, valid or not (a
        partition reading a long run of dead letters must not follow the wall clock), or the
        runtime knows input of it is waiting (past the consumer's position, or behind a fetch
        its leader does not answer: a broker down or cut off while others still send ticks)."""
        self._last_event_wall[partition] = wall

    def assigned(self, partitions: Iterable[int], wall: int) -> None:
        for partition in partitions:
            self._last_event_wall.setdefault(partition, wall)

    def ticked(self, partition: int, wall: int) -> None:
        """A tick of the partition is being processed. No tick for half the idle time or more
        means this worker was not reading (broker unreachable, rebalance, paused process), not
        that the partition was quiet: its idle timer restarts, so that input waiting behind the
        gap is not applied as late events after the partition moved to the wall clock."""
        last = self._last_tick_wall.get(partition)
        self._last_tick_wall[partition] = wall
        if last is not None and wall - last >= self.idle_after // 2:
            self._last_event_wall[partition] = max(self._last_event_wall.get(partition, wall),
                                                   wall)

    def watermark(self, partition: int) -> int | None:
        return self._watermark.get(partition)

    def idle(self, partition: int, wall: int) -> bool:
        last = self._last_event_wall.get(partition)
        return last is not None and wall - last >= self.idle_after

    def now(self, partition: int, wall: int) -> int | None:
        """The partition's clock: its watermark, or the wall clock once it has been idle."""
        watermark = self._watermark.get(partition)
        if self.idle(partition, wall):
            return wall if watermark is None else max(watermark, wall)
        return watermark
