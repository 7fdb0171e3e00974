"""Stopping a worker within a bounded time, whatever state it is in.

faust stops on SIGTERM (or SIGINT) by stopping its services and flushing its producer. The
flush does not end while an output topic is missing: it waits for batches that wait for the
topic, for up to faust's producer request timeout (20 minutes by default), so SIGTERM seemed
ignored. The same holds for any state in which a delivery cannot complete.

So a signal also starts a watchdog thread: if the worker has not exited GRACE_S seconds later,
it logs why and exits at once with status FORCED_EXIT_STATUS. Nothing is lost by that: the
worker commits a batch's offsets only once its outputs and its states are in Kafka
(streams/worker/runtime.py), so whatever was still waiting is read and processed again by the next
owner of its partition. Only the group leave is skipped: the
partitions move once the broker's session timeout has passed.

GRACE_S is below the stop grace of docker compose (30 s) and Kubernetes (60 s in
deploy/k8s/statefulset.yaml), so the worker's own line says why it stopped rather than a SIGKILL.

`request_stop` lets the worker stop itself the same way (with a nonzero exit status) when it
cannot go on without a restart.
"""

from __future__ import annotations

import logging
import os
import signal
import sys
import threading
import time
from typing import NoReturn

from streams.worker import faust_fixes

log = logging.getLogger("tierstream.shutdown")
GRACE_S = 25.0
FORCED_EXIT_STATUS = 1

_lock = threading.Lock()
_armed_at: float | None = None
_exit_status = 0


def arm(grace_s: float = GRACE_S) -> None:
    """Start the watchdog once: the process exits at the latest `grace_s` seconds from now."""
    global _armed_at
    with _lock:
        if _armed_at is not None:
            return
        _armed_at = time.monotonic()
    timer = threading.Timer(grace_s, _force_exit, args=(grace_s,))
    timer.daemon = True
    timer.name = "tierstream-stop-watchdog"
    timer.start()


def _force_exit(grace_s: float) -> None:
    log.error("the worker did not stop within %g s of the stop signal (a delivery or a flush "
              "still waiting, e.g. for a missing topic): exiting now with status %s; events "
              "not yet committed are processed again after the restart", grace_s,
              FORCED_EXIT_STATUS)
    for handler in logging.getLogger().handlers:
        try:
            handler.flush()
        except Exception:  # noqa: BLE001 - exiting anyway
            pass
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(FORCED_EXIT_STATUS)


def request_stop(reason: str, status: int = 1) -> None:
    """Stop the worker as SIGTERM does, then exit with `status`; `reason` is logged."""
    global _exit_status
    if _exit_status:
        return  # already stopping for a reason of its own
    _exit_status = status
    log.error("stopping the worker (exit status %s): %s", status, reason)
    os.kill(os.getpid(), signal.SIGTERM)


class GracefulWorker(faust_fixes.worker_signalling(arm)):
    """faust's worker, whose stop signals start the watchdog and whose exit status is the one
    asked for by request_stop."""

    def execute_from_commandline(self) -> NoReturn:
        try:
            super().execute_from_commandline()
        except SystemExit as done:
            if _exit_status and not done.code:
                raise SystemExit(_exit_status) from None
            raise
        raise SystemExit(_exit_status)  # pragma: no cover - the call above always exits
