"""Experiments only: run workers with named consumer patches of streaming/transport.py off.

Never part of the package: Python imports this module at start only when its folder is
on ``PYTHONPATH``, and the worker processes of a test inherit it, e.g.::

    PYTHONPATH=scripts/patch_ablation ABLATE_TRANSPORT_PATCHES=ack,gap \\
        pytest tests/integration/test_worker_faults.py -k kafka

Names: ``ack`` (stale acks refused, ``_GuardedMessage``), ``gap`` (``_add_gap``),
``head`` (``_new_offset``), ``holes`` (``_seek_back_over_holes``). Each process that
turns one off says so on stderr (a worker's log); an unknown name stops it.
"""

import os
import sys

PATCHES = frozenset({"ack", "gap", "head", "holes"})


def _ablate(names: frozenset[str]) -> None:
    unknown = names - PATCHES
    if unknown:
        raise SystemExit(
            f"ABLATE_TRANSPORT_PATCHES: unknown {sorted(unknown)}, known {sorted(PATCHES)}"
        )
    from phoenix_stream.streaming import transport

    consumer = transport._ShortFetchConsumer
    if "ack" in names:
        del consumer.ack, consumer._to_message  # Faust's ack and plain ConsumerMessage
    if "gap" in names:
        del consumer._add_gap
    if "head" in names:
        del consumer._new_offset
    if "holes" in names:

        async def _never_seek_back(self: object) -> None:
            return None

        consumer._seek_back_over_holes = _never_seek_back
    print(
        f"PATCH ABLATION (experiment only): transport patches OFF: {sorted(names)}",
        file=sys.stderr,
        flush=True,
    )


_names = frozenset(
    name for name in os.environ.get("ABLATE_TRANSPORT_PATCHES", "").split(",") if name
)
if _names:
    _ablate(_names)
