"""What aiohttp's parser refuses is answered in JSON by a real server (in process), and
connections past the bound get a 503."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import orjson
import pytest
from aiohttp import web as aiohttp_web
from aiohttp.http_exceptions import BadHttpMessage, LineTooLong

from phoenix_stream.webserver.protocol import BoundedRunner, parser_error


def test_parser_errors_map_to_a_status_and_a_field() -> None:
    assert parser_error(LineTooLong(b"/aaa", 8190), True)[::2] == (414, "path")
    assert parser_error(LineTooLong(b"X-A", 8190), False)[::2] == (431, "headers")
    assert parser_error(BadHttpMessage("Too many headers received"), False)[::2] == (
        431,
        "headers",
    )
    bad_length = BadHttpMessage("Invalid character in Content-Length")
    assert parser_error(bad_length, False)[::2] == (400, "Content-Length")
    assert parser_error(None, False) == (400, "bad request", None)


async def _health(request: aiohttp_web.Request) -> aiohttp_web.Response:
    return aiohttp_web.json_response({"status": "ok"})


@pytest.fixture
async def port() -> AsyncIterator[int]:
    app = aiohttp_web.Application()
    app.router.add_get("/health", _health)
    runner = BoundedRunner(app, max_connections=2)
    await runner.setup()
    site = aiohttp_web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    try:
        yield runner.addresses[0][1]
    finally:
        await runner.cleanup()


async def _exchange(port: int, raw: bytes) -> tuple[int, Any]:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(raw)
        async with asyncio.timeout(10):
            answer = await reader.read()
    finally:
        writer.close()
    head, _, body = answer.partition(b"\r\n\r\n")
    assert b"application/json" in head, head
    return int(head.split()[1]), orjson.loads(body)


async def test_parser_refusals_are_json(port: int) -> None:
    status, body = await _exchange(port, b"GET /" + b"a" * 9000 + b" HTTP/1.1\r\n\r\n")
    assert (status, body["field"]) == (414, "path")
    status, body = await _exchange(port, b"\x16\x03\x01 hello\r\n\r\n")
    assert status == 400 and body["error"]


async def test_connections_past_the_bound_get_503(port: int) -> None:
    held = [await asyncio.open_connection("127.0.0.1", port) for _ in range(2)]
    try:
        await asyncio.sleep(0)  # let the server accept them
        for _ in range(100):
            status, body = await _exchange(port, b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n")
            if status == 503:
                break
            await asyncio.sleep(0.05)
        assert status == 503 and body["kind"] == "overloaded"
    finally:
        for _, writer in held:
            writer.close()
