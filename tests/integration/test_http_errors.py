"""Anything an HTTP client sends gets a JSON answer, never a 500 or plain text; slow
clients are cut off within the read timeouts while /health keeps answering.

Requests go over raw sockets: the findings are bytes that well-behaved clients refuse
to send (undecodable headers, bodies that lie about their encoding, endless heads).
"""

from __future__ import annotations

import asyncio
import gzip
import time
import zlib
from typing import Any

import orjson
import pytest
from aiohttp import compression_utils

from phoenix_stream.tools.worker_process import WorkerProcess

TOKEN = "test-admin-token"
HEADER_TIMEOUT_S = 3.0
BODY_TIMEOUT_S = 3.0
MAX_CONNECTIONS = 60
ADMIN_CALLS = [
    ("PUT", "/v1/deployments/credit-risk", b'{"champion": "1"}'),
    ("POST", "/v1/deployments/credit-risk/promote", b"{}"),
    ("POST", "/v1/deployments/credit-risk/rollback", b"{}"),
    ("POST", "/v1/models/credit-risk/retrain", b"{}"),
]
BODY = b'{"entity_id": "c000042"}'


@pytest.fixture(scope="module")
async def worker(worker_factory: Any) -> WorkerProcess:
    started: WorkerProcess = await worker_factory.start(
        admin_token=TOKEN,
        http_header_timeout_s=HEADER_TIMEOUT_S,
        http_body_timeout_s=BODY_TIMEOUT_S,
        http_max_connections=MAX_CONNECTIONS,
    )
    return started


class Answer:
    """A parsed HTTP answer: status, lower-cased headers, body bytes."""

    def __init__(self, raw: bytes) -> None:
        head, _, self.body = raw.partition(b"\r\n\r\n")
        lines = head.decode("latin-1").split("\r\n")
        self.status = int(lines[0].split()[1])
        self.headers = {
            name.strip().lower(): value.strip()
            for name, _, value in (line.partition(":") for line in lines[1:])
        }

    def json(self) -> Any:
        """The body as JSON, after checking that it says it is JSON."""
        assert self.headers.get("content-type", "").startswith("application/json"), self.headers
        return orjson.loads(self.body)


async def send(worker: WorkerProcess, request: bytes, timeout_s: float = 15.0) -> Answer:
    """Send raw bytes on a new connection and read one answer (the server closes it, or
    its Content-Length says where it ends)."""
    reader, writer = await asyncio.open_connection("127.0.0.1", worker.settings.web_port)
    try:
        writer.write(request)
        await writer.drain()
        async with asyncio.timeout(timeout_s):
            head = await reader.readuntil(b"\r\n\r\n")
            answer = Answer(head)
            length = int(answer.headers.get("content-length", "-1"))
            body = await (reader.readexactly(length) if length >= 0 else reader.read())
    finally:
        writer.close()
    return Answer(head + body)


def request(method: str, path: str, body: bytes = b"", headers: bytes = b"") -> bytes:
    """The bytes of one HTTP/1.1 request (``headers``: extra raw header lines)."""
    return (
        f"{method} {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n".encode()
        + headers
        + f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n".encode()
        + body
    )


@pytest.mark.parametrize(("method", "path", "body"), ADMIN_CALLS)
async def test_undecodable_authorization_is_json_401(
    worker: WorkerProcess, method: str, path: str, body: bytes
) -> None:
    # Found: a 500 with a traceback (UnicodeEncodeError in the token compare).
    answer = await send(worker, request(method, path, body, b"Authorization: Bearer \xff\xfe\r\n"))
    assert answer.status == 401
    assert answer.json()["field"] == "Authorization"
    # What held stays: no token 401, a wrong one 403, both JSON naming the header.
    for extra, status in ((b"", 401), (b"Authorization: Bearer wrong\r\n", 403)):
        answer = await send(worker, request(method, path, body, extra))
        assert (answer.status, answer.json()["field"]) == (status, "Authorization")


@pytest.mark.parametrize(("method", "path", "_"), ADMIN_CALLS)
async def test_admin_bodies_are_still_parsed(
    worker: WorkerProcess, method: str, path: str, _: bytes
) -> None:
    # The middleware reads every body first: views must still see it (found by
    # schemathesis: promote, rollback and retrain took "zz" as no body, 200/202).
    headers = f"Authorization: Bearer {TOKEN}\r\n".encode()
    answer = await send(worker, request(method, path, b"zz", headers))
    assert answer.status == 400 and "JSON" in answer.json()["error"]


def _brotli_or_zstd(encoding: str) -> bool:
    return bool(compression_utils.HAS_BROTLI if encoding == "br" else compression_utils.HAS_ZSTD)


@pytest.mark.parametrize("encoding", ["gzip", "deflate", "br", "zstd", "GZIP"])
async def test_body_that_is_not_its_encoding_is_json_400(
    worker: WorkerProcess, encoding: str
) -> None:
    # Found: gzip and deflate a 500, br and zstd a text 400.
    answer = await send(
        worker,
        request("POST", "/v1/predict", BODY, f"Content-Encoding: {encoding}\r\n".encode()),
    )
    if encoding in ("br", "zstd") and not _brotli_or_zstd(encoding):
        assert answer.status == 415  # aiohttp cannot decode it here at all
    else:
        assert answer.status == 400
    assert answer.json()["field"] == "Content-Encoding"


@pytest.mark.parametrize("encoding", ["snappy", "gzip, br", "x-\xe9"])
async def test_unknown_encoding_is_json_415(worker: WorkerProcess, encoding: str) -> None:
    # Found: passed through undecoded (the view then parsed the encoded bytes).
    headers = f"Content-Encoding: {encoding}\r\n".encode("latin-1")
    answer = await send(worker, request("POST", "/v1/predict", BODY, headers))
    assert (answer.status, answer.json()["field"]) == (415, "Content-Encoding")


@pytest.mark.parametrize(
    ("encoding", "compress"),
    [("gzip", gzip.compress), ("deflate", zlib.compress), ("identity", bytes)],
)
async def test_encoded_bodies_still_served(
    worker: WorkerProcess, encoding: str, compress: Any
) -> None:
    body = compress(BODY)
    answer = await send(
        worker, request("POST", "/v1/predict", body, f"Content-Encoding: {encoding}\r\n".encode())
    )
    assert answer.status == 200 and answer.json()["entity_id"] == "c000042"


async def test_gzip_bomb_is_json_413(worker: WorkerProcess) -> None:
    bomb = gzip.compress(b'{"entity_id": "' + b"0" * (20 * worker.settings.max_record_bytes))
    assert len(bomb) < worker.settings.max_record_bytes // 10
    answer = await send(worker, request("POST", "/v1/predict", bomb, b"Content-Encoding: gzip\r\n"))
    assert (answer.status, answer.json()["field"]) == (413, "body")


@pytest.mark.parametrize(
    ("raw", "status", "field"),
    [
        (b"GET /no/such/path HTTP/1.1\r\nHost: x\r\n\r\n", 404, "path"),
        (b"DELETE /v1/predict HTTP/1.1\r\nHost: x\r\n\r\n", 405, "method"),
        (b"GET /" + b"a" * 9000 + b" HTTP/1.1\r\nHost: x\r\n\r\n", 414, "path"),
        (b"GET /health HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * 9000 + b"\r\n\r\n", 431, "headers"),
        (
            b"GET /health HTTP/1.1\r\nHost: x\r\n"
            + b"".join(b"X-%d: 1\r\n" % i for i in range(200))
            + b"\r\n",
            431,
            "headers",
        ),
        (b"\x16\x03\x01\x02\x00 hello\r\n\r\n", 400, "method"),
        (b"GET /health HTTP/1.1\r\nHost: x\r\nContent-Length: -5\r\n\r\n", 400, "Content-Length"),
        (
            b"POST /v1/predict HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
            400,
            "body",
        ),
    ],
)
async def test_refusals_are_json_errors(
    worker: WorkerProcess, raw: bytes, status: int, field: str
) -> None:
    # Found: text/plain answers (aiohttp's router and its parser answer before any view).
    answer = await send(worker, raw)
    body = answer.json()
    assert answer.status == status, body
    assert body["error"] and body["field"] == field
    if status == 405:
        assert answer.headers["allow"] == "HEAD,POST"


async def _health_ms(worker: WorkerProcess) -> float:
    started = time.monotonic()
    answer = await send(worker, b"GET /health HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
    assert answer.status == 200
    return (time.monotonic() - started) * 1000


async def test_slow_heads_are_closed_and_health_answers(worker: WorkerProcess) -> None:
    # Found: 200 connections trickling a request head for 30 s were never closed.
    count = 50
    port = worker.settings.web_port
    streams = [await asyncio.open_connection("127.0.0.1", port) for _ in range(count)]

    async def trickle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> float:
        """Send a head one header every 0.5 s until the server closes; seconds it took."""
        started = time.monotonic()
        writer.write(b"GET /health HTTP/1.1\r\nHost: x\r\n")
        try:
            async with asyncio.timeout(HEADER_TIMEOUT_S + 20):
                while not reader.at_eof():
                    writer.write(b"X-Slow: 1\r\n")
                    await writer.drain()
                    try:
                        async with asyncio.timeout(0.5):
                            await reader.read(1024)
                    except TimeoutError:
                        continue
        except ConnectionError:
            pass  # closed while we wrote: as good as EOF
        finally:
            writer.close()
        return time.monotonic() - started

    trickles = asyncio.gather(*(trickle(r, w) for r, w in streams))
    health = []
    while not trickles.done():
        health.append(await _health_ms(worker))
        await asyncio.sleep(0.2)
    held = await trickles
    # Each closed within the header timeout plus scheduling slack; /health answered.
    assert max(held) < HEADER_TIMEOUT_S + 10, held
    assert min(held) >= HEADER_TIMEOUT_S - 0.5, held
    assert health and max(health) < 5000, health
    print(f"slow heads held {min(held):.1f}-{max(held):.1f} s; /health max {max(health):.0f} ms")


async def test_slow_body_is_json_408(worker: WorkerProcess) -> None:
    started = time.monotonic()
    head = b"POST /v1/predict HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n"
    answer = await send(worker, head + b'{"entity_id"', timeout_s=BODY_TIMEOUT_S + 15)
    assert (answer.status, answer.json()["field"]) == (408, "body")
    assert answer.headers.get("connection") == "close"
    assert time.monotonic() - started >= BODY_TIMEOUT_S - 0.5


async def test_connections_over_the_bound_get_json_503(worker: WorkerProcess) -> None:
    port = worker.settings.web_port
    held = [await asyncio.open_connection("127.0.0.1", port) for _ in range(MAX_CONNECTIONS)]
    try:
        # The held ones count once the server accepted them: the next gets a 503.
        deadline = time.monotonic() + HEADER_TIMEOUT_S / 2
        answer = await send(worker, b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n")
        while answer.status != 503 and time.monotonic() < deadline:
            answer = await send(worker, b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n")
        assert answer.status == 503 and answer.headers["retry-after"] == "1"
        assert answer.json()["kind"] == "overloaded"
    finally:
        for _, writer in held:
            writer.close()
    # Freed: served again (the server notices the closes within a moment).
    deadline = time.monotonic() + 10
    answer = await send(worker, b"GET /health HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
    while answer.status != 200 and time.monotonic() < deadline:
        await asyncio.sleep(0.1)
        answer = await send(worker, b"GET /health HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
    assert answer.status == 200
