"""``phoenix-stream drift MODEL``: a model's latest drift reports as a table in the terminal.

The reports come from a running worker's open ``GET /v1/drift/{model}`` (at
``PHOENIX_ADMIN_URL``, default this machine's ``PHOENIX_WEB_HOST:PORT``, as for the admin
commands), so the CLI needs neither the database's address nor the admin token.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from typing import Any, NamedTuple
from urllib.parse import quote

import aiohttp
import orjson

from phoenix_stream.drift.histograms import SCORE
from phoenix_stream.drift.report import DriftReport, parse_report
from phoenix_stream.exceptions import ValidationError
from phoenix_stream.lifecycle.admin_client import TIMEOUT_S, AdminError, admin_url
from phoenix_stream.settings import Settings

__all__ = ["DriftAnswer", "fetch_reports", "parse_answer", "render_reports"]


class DriftAnswer(NamedTuple):
    """A worker's reports, newest first, and its warning when it runs no drift agent."""

    reports: list[DriftReport]
    warning: str | None = None


async def fetch_reports(settings: Settings, model: str, limit: int) -> DriftAnswer:
    """The worker's ``limit`` latest reports of ``model``, newest first; AdminError if not."""
    url = f"{admin_url(settings)}/v1/drift/{quote(model, safe='')}"
    try:
        async with (
            aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=TIMEOUT_S)) as session,
            session.get(url, params={"limit": str(limit)}) as response,
        ):
            raw = await response.read()
            status = response.status
    except (aiohttp.ClientError, TimeoutError) as exc:
        raise AdminError(f"cannot reach the worker at {url}: {exc!r}") from exc
    return parse_answer(url, status, raw)


def parse_answer(url: str, status: int, raw: bytes) -> DriftAnswer:
    """The reports in a ``GET /v1/drift/{model}`` answer; AdminError with the worker's reason."""
    try:
        answer: Any = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise AdminError(f"{url} answered {status} with no JSON") from exc
    if status >= 400 or not isinstance(answer, dict):
        error = answer.get("error") if isinstance(answer, dict) else answer
        field = answer.get("field") if isinstance(answer, dict) else None
        raise AdminError(f"{status}: {error}" + (f" ({field})" if field else ""))
    warning = answer.get("warning")  # the worker does not run the drift agents
    reports = answer.get("reports")
    if not isinstance(reports, list):
        raise AdminError(f"{url} answered without a list of reports")
    try:
        parsed = [parse_report(report) for report in reports]
    except ValidationError as exc:
        raise AdminError(f"{url} answered a report that is not valid: {exc}") from exc
    return DriftAnswer(parsed, warning if isinstance(warning, str) else None)


def _time(epoch: float) -> str:
    return dt.datetime.fromtimestamp(epoch, dt.UTC).strftime("%Y-%m-%d %H:%M:%S")


def _duration(seconds: float) -> str:
    return f"{seconds:g} s" if seconds < 120 else f"{seconds / 60:g} min"


def _report_lines(report: DriftReport) -> list[str]:
    length = _duration(report.window_end - report.window_start)
    alarm = "ALARM" if report.alarm else "-"
    lines = [
        f"{_time(report.window_start)} +{length:<9} {report.version:<12} {report.n:>8} "
        f"{report.verdict:<12} {alarm:<6} {report.consecutive:>11}"
    ]
    if report.features:
        width = max(len("feature"), *(len(name) for name in report.features))
        lines.append(f"    {'feature':<{width}} {'D':>7} {'p':>10}  drifted")
        # Stored reports keep no feature order (jsonb): by name, the score last.
        for name in sorted(report.features, key=lambda name: (name == SCORE, name)):
            f = report.features[name]
            lines.append(
                f"    {name:<{width}} {f.statistic:>7.4f} {f.p_value:>10.3g}  "
                + ("yes" if f.drifted else "no")
            )
    return lines


def render_reports(model: str, reports: Sequence[DriftReport]) -> str:
    """A table: one line per window (newest first: UTC start, length, version, n, verdict,
    alarm, drifted windows in a row), then KS D, p-value and the call per feature."""
    if not reports:
        return f"{model}: no drift reports yet"
    header = (
        f"{'window start (UTC)':<19} {'length':<10} {'version':<12} {'n':>8} "
        f"{'verdict':<12} {'alarm':<6} {'consecutive':>11}"
    )
    lines = [f"{model}: {len(reports)} latest drift windows, newest first", header]
    for report in reports:
        lines.extend(_report_lines(report))
    return "\n".join(lines)
