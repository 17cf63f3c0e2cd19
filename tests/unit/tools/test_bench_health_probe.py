"""Steady-rate /health probes: the schedule, the bounds, and what counts as a failure.

The probes run against a real aiohttp server on 127.0.0.1 whose answer the test sets.
"""

from __future__ import annotations

import asyncio
import math
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

import pytest
from aiohttp import web
from hypothesis import given
from hypothesis import strategies as st

from phoenix_stream.tools.bench.health_flood import HealthFlood
from phoenix_stream.tools.bench.health_probe import HealthProbeResult, next_slot, probe_health
from phoenix_stream.tools.bench.phases import PhaseResult
from phoenix_stream.tools.worker_process import free_port


def test_next_slot_on_time_keeps_the_schedule() -> None:
    assert next_slot(10.0, 10.005, 0.02) == (pytest.approx(10.02), 0)


def test_next_slot_after_a_stall_sends_at_once_and_skips_the_passed_slots() -> None:
    # Slots at 10.02 .. 10.10 passed while the probe of slot 10.0 waited: one is sent
    # now, the other four are skipped.
    slot, skipped = next_slot(10.0, 10.105, 0.02)
    assert slot == 10.105
    assert skipped == 4


def test_next_slot_rejects_a_non_positive_interval() -> None:
    with pytest.raises(ValueError, match="interval"):
        next_slot(0.0, 0.0, 0.0)


@given(
    previous=st.floats(0, 1e6, allow_nan=False),
    elapsed=st.floats(0, 1e3, allow_nan=False),
    interval=st.floats(1e-3, 10, allow_nan=False),
)
def test_next_slot_never_bursts_nor_lies_back(
    previous: float, elapsed: float, interval: float
) -> None:
    now = previous + elapsed
    slot, skipped = next_slot(previous, now, interval)
    assert slot >= now  # never a probe in the past, so never a catch-up burst
    assert slot <= max(previous + interval, now)  # never later than due
    assert skipped >= 0
    # The slots skipped are at most those that passed by ``now``.
    assert skipped <= max(0, math.floor((now - previous) / interval))


@dataclass
class _Server:
    """What the test server answers, and the requests it saw."""

    status: int = 200
    delay_s: float = 0.0
    seen: int = 0
    third_seen: asyncio.Event = field(default_factory=asyncio.Event)
    peers: set[tuple[str, int]] = field(default_factory=set)
    url: str = ""


@pytest.fixture
async def server() -> AsyncIterator[_Server]:
    state = _Server()

    async def health(request: web.Request) -> web.Response:
        state.seen += 1
        if state.seen >= 3:
            state.third_seen.set()
        peer = request.transport.get_extra_info("peername") if request.transport else None
        if peer is not None:
            state.peers.add((str(peer[0]), int(peer[1])))
        if state.delay_s:
            await asyncio.sleep(state.delay_s)
        return web.json_response({"status": "ok"}, status=state.status)

    app = web.Application()
    app.router.add_get("/health", health)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    state.url = f"http://127.0.0.1:{port}/health"
    try:
        yield state
    finally:
        await runner.cleanup()


async def test_probes_stop_at_the_count_on_one_connection(server: _Server) -> None:
    result = await probe_health(server.url, interval_s=0.005, max_probes=20, max_seconds=30)
    assert result.probes == result.sent == server.seen == 20
    assert result.errors == 0
    assert len(server.peers) == 1  # one keep-alive connection for every probe
    assert all(latency > 0 for latency in result.latencies_ms)
    assert 0 < result.p(50) <= result.p(99) <= result.max_ms


async def test_probes_keep_to_the_interval(server: _Server) -> None:
    result = await probe_health(server.url, interval_s=0.05, max_probes=5, max_seconds=30)
    # Five probes on a 50 ms schedule: the last one goes out 200 ms after the first.
    assert result.elapsed_s >= 0.2
    assert result.probes == 5


async def test_probes_stop_when_told(server: _Server) -> None:
    stop = asyncio.Event()
    probing = asyncio.create_task(
        probe_health(server.url, interval_s=0.01, max_probes=10_000, max_seconds=30, stop=stop)
    )
    await asyncio.wait_for(server.third_seen.wait(), 5)
    stop.set()
    result = await asyncio.wait_for(probing, 5)
    assert 3 <= result.probes < 10_000
    assert result.probes == server.seen


async def test_probes_stop_at_the_time_bound(server: _Server) -> None:
    result = await probe_health(server.url, interval_s=0.05, max_probes=10_000, max_seconds=0.3)
    assert 1 <= result.probes <= 8
    assert result.elapsed_s < 5


async def test_a_slow_answer_is_a_timeout_with_its_wait_as_latency(server: _Server) -> None:
    server.delay_s = 0.5
    result = await probe_health(
        server.url, interval_s=0.01, max_probes=2, max_seconds=30, timeout_s=0.1
    )
    assert result.timeouts == result.errors == 2
    assert result.probes == 2
    assert min(result.latencies_ms) >= 100.0
    assert "0.1 s" in result.first_error


async def test_a_stall_shows_as_one_long_probe_and_skipped_slots(server: _Server) -> None:
    server.delay_s = 0.1
    result = await probe_health(server.url, interval_s=0.01, max_probes=3, max_seconds=30)
    assert result.probes == 3
    assert result.errors == 0
    assert result.skipped_slots >= 3 * 5  # about 9 slots pass during each 100 ms answer


async def test_another_status_counts_as_a_failed_probe(server: _Server) -> None:
    server.status = 503
    result = await probe_health(server.url, interval_s=0.005, max_probes=3, max_seconds=30)
    assert result.errors == 3
    assert result.first_error == "HTTP 503"


async def test_an_unknown_path_counts_as_a_failed_probe(server: _Server) -> None:
    url = server.url.replace("/health", "/nowhere")
    result = await probe_health(url, interval_s=0.005, max_probes=2, max_seconds=30)
    assert result.errors == 2 and result.first_error == "HTTP 404"


async def test_a_refused_connection_counts_as_a_failed_probe() -> None:
    url = f"http://127.0.0.1:{free_port()}/health"  # nothing listens there
    result = await probe_health(url, interval_s=0.005, max_probes=10, max_seconds=30)
    assert result.errors == result.sent == 10  # counted against the bound all the same
    assert result.probes == 0  # no latency without an answer
    assert "Connect" in result.first_error


async def test_only_loopback_is_probed() -> None:
    with pytest.raises(ValueError, match=r"127\.0\.0\.1"):
        await probe_health(
            "http://10.0.0.1:8080/health", interval_s=0.02, max_probes=1, max_seconds=1
        )


def test_fields_are_null_not_nan_without_probes() -> None:
    phase = PhaseResult("health_flood", 1000, 1000, 5000.0, 0.2, True, 0)
    fields = HealthFlood(phase, HealthProbeResult(), HealthProbeResult(), 1, 1000, 20.0).fields()
    assert fields["health_flood_p99_ms"] is None
    assert fields["health_idle_max_ms"] is None
    assert fields["health_flood_probes"] == 0
    assert fields["health_flood_rps"] == 5000.0


def test_fields_carry_the_percentiles_in_ms() -> None:
    phase = PhaseResult("health_flood", 1000, 1000, 5000.0, 0.2, True, 0)
    flood = HealthProbeResult(latencies_ms=[float(v) for v in range(1, 101)], sent=100)
    idle = HealthProbeResult(latencies_ms=[1.0, 2.0], sent=2)
    fields = HealthFlood(phase, flood, idle, 80, 1000, 20.0).fields()
    assert fields["health_flood_p50_ms"] == 50.5
    assert fields["health_flood_p99_ms"] == 99.01
    assert fields["health_flood_max_ms"] == 100.0
    assert fields["health_flood_probes"] == 100
    assert fields["health_idle_p99_ms"] == 1.99
    assert (fields["health_flood_records"], fields["health_flood_batch"]) == (80, 1000)
