"""The loop every agent runs: take a batch, handle it under the failure policy, then ack.

Events are acknowledged only after their batch was handled (outputs delivered, rows
written or dead-lettered), so a worker that dies mid-batch leaves them to be redelivered:
at-least-once, with idempotent consumers downstream.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Sequence
from typing import Any

from phoenix_stream.exceptions import ShuttingDown
from phoenix_stream.messages.records import InRecord
from phoenix_stream.streaming.failure_policy import FailurePolicy, Handler

log = logging.getLogger(__name__)

Grouper = Callable[[Sequence[InRecord]], Iterable[Sequence[InRecord]]]


def one_group(records: Sequence[InRecord]) -> Iterable[Sequence[InRecord]]:
    """The whole batch as one group."""
    return (records,)


async def run_batches(
    stream: Any,
    handle: Handler,
    policy: FailurePolicy,
    *,
    take: int,
    within_s: float,
    groups: Grouper = one_group,
) -> None:
    """Consume ``stream`` in batches of up to ``take`` events (or ``within_s`` seconds).

    ``groups`` splits a batch into the units handed to the policy, bounding the work
    (and the replay after an isolated failure) of one handler call. The policy's stall
    watch sees each batch held and the events waiting in the stream's queue. Returns when
    the stream ends, or when the worker stops with a batch not handled (left unacked).
    """
    watch = policy.watch
    watch.attach(stream)
    async for events in stream.noack_take(take, within=within_s):
        records = [InRecord.of(event.message) for event in events]
        try:
            with watch.holding(records):
                for group in groups(records):
                    await policy.run(group, handle)
        except ShuttingDown as exc:
            # Not acked, so not committed: the next owner reads the batch again. The
            # agent ends here rather than crash (a crashed agent is restarted even while
            # the worker stops, and the stop then waits for it).
            log.warning("%s; the agent ends with the stop", exc)
            return
        for event in events:
            await stream.ack(event)
