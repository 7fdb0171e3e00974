"""One correction to faust-streaming 0.15.x that at-least-once delivery depends on.

`Recovery.on_recovery_completed` resumes the stream partitions and only then seeks them back to
their committed offsets. The consumer keeps fetching stream partitions while the tables recover
from their changelogs, so after a restart that had a changelog to read (always with `memory://`)
the fetcher can hand the agent those early records in the window between resume and seek; the
read offsets then get tangled with the seek and a block of input records is skipped for good:
found by the SIGKILL test (about one restart in three lost a block of one partition's events;
with this fix, none in repeated runs). The fix seeks first and resumes after, the order faust's
own `_resume_streams` was given in faust-streaming PR #217. Everything else is faust's code as is.
"""

from __future__ import annotations

import asyncio
from typing import Any, cast

from faust.tables.recovery import Recovery


async def _on_recovery_completed(self: Recovery, generation_id: int = 0) -> None:
    consumer = self.app.consumer
    self.log.info("Restore complete!")
    await self.app.on_rebalance_complete.send()
    self._set_recovery_ended()
    callbacks = [asyncio.ensure_future(table.on_recovery_completed(
        self.actives_for_table[table], self.standbys_for_table[table]))
        for table in self.tables.values()]
    if callbacks:
        await asyncio.wait(callbacks)
    assignment = consumer.assignment()
    if self.app.consumer_generation_id != generation_id:
        self.log.warning("Recovery rebalancing again app id %s param %s",
                         self.app.consumer_generation_id, generation_id)
        return
    if assignment:  # seek before resume: nothing fetched before the seek may reach the agent
        self.log.info("Seek stream partitions to committed offsets.")
        await self._wait(consumer.perform_seek(),
                         timeout=self.app.conf.broker_request_timeout)
    consumer.resume_partitions({tp for tp in assignment if not self._is_changelog_tp(tp)})
    self.completed.set()
    self.app.flow_control.resume()
    consumer.resume_flow()
    await cast(Any, self.app)._fetcher.maybe_start()
    self.tables.on_actives_ready()
    if not self.app.assignor.assigned_standbys():
        self.tables.on_standbys_ready()
    self.app.on_rebalance_end()
    self.log.info("Worker ready")


def install() -> None:
    Recovery.on_recovery_completed = _on_recovery_completed
