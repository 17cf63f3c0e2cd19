"""Consuming agents declared as specs, and the one runner that runs them.

A :class:`ConsumerSpec` says what an agent reads, how one record becomes its messages
(or rejections), what it does with the valid ones, and how much it takes at a time.
:func:`register_consumer` makes the Faust agent: it takes batches (``run_batches``),
decodes every record, runs the handler under the one failure policy, dead-letters each
rejection with its reason and original bytes, emits what the handler returns with the
dead letters, and acks only after all of it (docs/architecture.md section 7).

The inference agent (its pipeline decodes, routes and emits in groups) and the
drift-windows agent (Faust writes a table only inside an event's own iteration) keep
their own loops on the same policy.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any, Generic, Protocol, TypeVar

from faust.types import TopicT

from phoenix_stream.exceptions import Unauthenticated, ValidationError
from phoenix_stream.messages.dead_letters import DeadLetters
from phoenix_stream.messages.records import InRecord, OutRecord
from phoenix_stream.messages.validation import Rejected
from phoenix_stream.streaming.batches import run_batches
from phoenix_stream.streaming.emitter import BatchEmitter
from phoenix_stream.streaming.failure_policy import FailurePolicy

__all__ = [
    "AgentHost",
    "ConsumerSpec",
    "Taken",
    "handle_batch",
    "one_message",
    "register_consumer",
]

Message = TypeVar("Message")
Taken = tuple[InRecord, Message]
"""A valid message and the record it came from (for a dead letter the handler writes)."""


@dataclass(frozen=True)
class ConsumerSpec(Generic[Message]):
    """One consuming agent: ``phoenix.<name>`` on ``topic``.

    ``decode`` turns one record into its messages and rejections (a record may hold a
    list); ``handle`` gets the valid messages of a batch, in order, and returns what to
    emit besides the rejections' dead letters (its own dead letters, outputs). A batch is
    up to ``take`` records or what arrived within ``within_s`` seconds; ``patience_s``
    is how long one handler await may take before the stall watch calls it stalled.
    """

    name: str
    topic: TopicT
    decode: Callable[[InRecord], Iterable[Message | Rejected]]
    handle: Callable[[Sequence[Taken[Message]]], Awaitable[Sequence[OutRecord]]]
    take: int
    within_s: float
    patience_s: float | None = None


def one_message(
    parse: Callable[[InRecord], Message | None], invalid_kind: str
) -> Callable[[InRecord], Iterable[Message | Rejected]]:
    """A ``decode`` for records of one message: ``parse`` returns it (None: nothing to do,
    such as a tombstone) or raises ValidationError, dead-lettered as ``invalid_kind``
    (``unauthenticated_control`` when it is ``Unauthenticated``)."""

    def decode(record: InRecord) -> Iterable[Message | Rejected]:
        try:
            message = parse(record)
        except ValidationError as exc:
            kind = exc.dead_letter_kind if isinstance(exc, Unauthenticated) else invalid_kind
            return [Rejected(kind, str(exc), exc.field, record.value or b"", None)]
        return [] if message is None else [message]

    return decode


async def handle_batch(
    spec: ConsumerSpec[Message],
    records: Sequence[InRecord],
    letters: DeadLetters,
    emit: Callable[[list[OutRecord]], Awaitable[Any]],
) -> None:
    """One batch of ``spec``'s agent: decode, handle the valid messages, emit the rest.

    The dead letters of the rejections go out with what the handler returns, after it:
    a handler that fails (an outage, retried whole by the policy) emits nothing twice.
    """
    taken: list[Taken[Message]] = []
    dead: list[OutRecord] = []
    for record in records:
        for decoded in spec.decode(record):
            if isinstance(decoded, Rejected):
                dead.append(_dead_letter(letters, record, decoded))
            else:
                taken.append((record, decoded))
    out = list(await spec.handle(taken)) if taken else []
    if dead or out:
        await emit([*dead, *out])


class ConsumerRuntime(Protocol):
    """What a consumer uses of its worker's runtime (``runtime.Runtime``)."""

    dead_letters: DeadLetters
    emitter: BatchEmitter

    def failure_policy(self, agent: str, patience_s: float | None = None) -> FailurePolicy: ...


class AgentHost(Protocol):
    """The app a consumer is registered on (``app.PhoenixApp``): Faust's ``agent``
    decorator and the worker's runtime. A protocol, so streaming imports no app."""

    @property
    def runtime(self) -> ConsumerRuntime: ...

    def agent(self, channel: Any = ..., *, name: str | None = ..., **kwargs: Any) -> Any: ...


def register_consumer(app: AgentHost, spec: ConsumerSpec[Message]) -> None:
    """Add the agent of ``spec`` to ``app``: batches of it under the failure policy."""

    async def consume(stream: Any) -> None:
        runtime = app.runtime

        async def handle(records: Sequence[InRecord]) -> None:
            await handle_batch(spec, records, runtime.dead_letters, runtime.emitter.emit)

        policy = runtime.failure_policy(spec.name, patience_s=spec.patience_s)
        await run_batches(stream, handle, policy, take=spec.take, within_s=spec.within_s)

    consume.__doc__ = f"The {spec.name} consumer (streaming.consumers)."
    app.agent(spec.topic, name=f"phoenix.{spec.name}")(consume)


def _dead_letter(letters: DeadLetters, record: InRecord, rejected: Rejected) -> OutRecord:
    return letters.record(
        record,
        rejected.kind,
        rejected.error,
        field=rejected.field,
        original=rejected.original,
        batch_index=rejected.batch_index,
    )
