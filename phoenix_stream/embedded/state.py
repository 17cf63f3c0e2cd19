"""``state_dir/services.json``: what runs where, shared by every command on one state dir.

A stopped service keeps its entry (pid set to None) so that it comes back on the same
port; writes are atomic and serialised by an advisory lock on ``state_dir/services.lock``.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
from collections.abc import Iterator
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

from phoenix_stream.exceptions import ServiceError

__all__ = ["STATE_FILE", "ServiceRecord", "read_records", "state_lock", "write_records"]

STATE_FILE = "services.json"
_LOCK_FILE = "services.lock"


@dataclass(frozen=True)
class ServiceRecord:
    """One service as last started: ``url``, TCP ``port``, ``pid`` (None once stopped), ``log``.

    ``kind`` tells programs of one role apart: the broker is ``tansu`` or ``kafka``.
    """

    name: str
    url: str
    port: int
    pid: int | None
    log: str
    kind: str = ""

    def stopped(self) -> ServiceRecord:
        """The same service with no pid (it keeps url and port for its next start)."""
        return replace(self, pid=None)

    def to_json(self) -> dict[str, Any]:
        """A JSON-ready dict (``name`` is the key in services.json, so it is left out)."""
        data = asdict(self)
        del data["name"]
        if not data["kind"]:
            del data["kind"]  # only the broker has kinds
        return data

    @classmethod
    def from_json(cls, name: str, data: Any) -> ServiceRecord:
        """Parse one services.json entry; ServiceError when it is malformed."""
        if not isinstance(data, dict):
            raise ServiceError(f"{STATE_FILE}: entry {name!r} is not an object")
        try:
            url, port, pid, log = data["url"], data["port"], data.get("pid"), data["log"]
        except KeyError as exc:
            raise ServiceError(f"{STATE_FILE}: entry {name!r} lacks {exc.args[0]!r}") from exc
        if not isinstance(url, str) or not isinstance(log, str):
            raise ServiceError(f"{STATE_FILE}: entry {name!r}: url and log must be strings")
        if isinstance(port, bool) or not isinstance(port, int):
            raise ServiceError(f"{STATE_FILE}: entry {name!r}: port must be an integer")
        if pid is not None and (isinstance(pid, bool) or not isinstance(pid, int)):
            raise ServiceError(f"{STATE_FILE}: entry {name!r}: pid must be an integer or null")
        kind = data.get("kind", "")
        if not isinstance(kind, str):
            raise ServiceError(f"{STATE_FILE}: entry {name!r}: kind must be a string")
        return cls(name=name, url=url, port=port, pid=pid, log=log, kind=kind)


def read_records(state_dir: Path) -> dict[str, ServiceRecord] | None:
    """The records in ``state_dir/services.json``; None when the file does not exist."""
    path = state_dir / STATE_FILE
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise ServiceError(f"cannot read {path}: {exc}") from exc
    try:
        raw = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ServiceError(f"{path} is not valid JSON: {exc}") from exc
    if not isinstance(raw, dict):
        raise ServiceError(f"{path}: top level must be an object")
    return {name: ServiceRecord.from_json(name, entry) for name, entry in raw.items()}


def write_records(state_dir: Path, records: dict[str, ServiceRecord]) -> None:
    """Replace ``state_dir/services.json`` atomically with ``records`` (sorted by name)."""
    state_dir.mkdir(parents=True, exist_ok=True)
    path = state_dir / STATE_FILE
    tmp = path.with_name(f".{STATE_FILE}.{os.getpid()}.tmp")
    payload = {name: records[name].to_json() for name in sorted(records)}
    tmp.write_text(json.dumps(payload, indent=2) + "\n", encoding="utf-8")
    # Readers never see a half-written file.
    os.replace(tmp, path)


@contextlib.contextmanager
def state_lock(state_dir: Path) -> Iterator[None]:
    """Hold an exclusive advisory lock on ``state_dir`` (blocks other starters and stoppers)."""
    state_dir.mkdir(parents=True, exist_ok=True)
    with (state_dir / _LOCK_FILE).open("a") as fh:
        fcntl.flock(fh.fileno(), fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh.fileno(), fcntl.LOCK_UN)
