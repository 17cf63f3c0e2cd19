"""Apache Kafka's jars, fetched once with Maven from a pinned version into a cache.

No tarball and no Docker: the broker is the ``org.apache.kafka:kafka_2.13`` artefact and
its runtime dependencies, with a log4j2 binding, copied by ``mvn
dependency:copy-dependencies`` into ``CACHE/kafka-VERSION/lib``. A folder with its
``complete`` marker is reused without Maven (offline); a fetch that fails half-way leaves
no marker, so the next start fetches again. Concurrent starters share one fetch (a lock).
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import re
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

from phoenix_stream.exceptions import ServiceError

__all__ = [
    "KAFKA_VERSION",
    "default_cache_dir",
    "ensure_kafka_jars",
    "java_executable",
]

# The Apache Kafka version the tests, the demo and compose.yaml run (one place).
KAFKA_VERSION = "4.1.1"
_LOG4J_VERSION = "2.25.3"
# kafka_2.13 pulls slf4j-api 1.7, which cannot see log4j2's slf4j2 binding.
_SLF4J_VERSION = "2.0.17"
_MIN_JAVA = 17
_FETCH_TIMEOUT_S = 600.0
_MARKER = "complete"

_POM = """<project xmlns="http://maven.apache.org/POM/4.0.0">
  <modelVersion>4.0.0</modelVersion>
  <groupId>phoenix-stream</groupId>
  <artifactId>embedded-kafka</artifactId>
  <version>{kafka}</version>
  <packaging>pom</packaging>
  <dependencies>
    <dependency>
      <groupId>org.apache.kafka</groupId><artifactId>kafka_2.13</artifactId>
      <version>{kafka}</version>
    </dependency>
    <dependency>
      <groupId>org.apache.logging.log4j</groupId><artifactId>log4j-core</artifactId>
      <version>{log4j}</version>
    </dependency>
    <dependency>
      <groupId>org.apache.logging.log4j</groupId><artifactId>log4j-slf4j2-impl</artifactId>
      <version>{log4j}</version>
    </dependency>
    <dependency>
      <groupId>org.slf4j</groupId><artifactId>slf4j-api</artifactId>
      <version>{slf4j}</version>
    </dependency>
  </dependencies>
</project>
"""

_JDK_HINT = "install a JDK 17 or newer (Debian: apt-get install openjdk-17-jre-headless)"


def default_cache_dir() -> Path:
    """``$PHOENIX_KAFKA_CACHE``, else ``$XDG_CACHE_HOME/phoenix-stream``, else ``~/.cache/...``."""
    explicit = os.environ.get("PHOENIX_KAFKA_CACHE")
    if explicit:
        return Path(explicit)
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "phoenix-stream"


def java_executable() -> Path:
    """The ``java`` to run the broker with (``$JAVA_HOME/bin/java``, else PATH), checked >= 17."""
    home = os.environ.get("JAVA_HOME")
    candidate = Path(home) / "bin" / "java" if home else None
    found = (
        str(candidate) if candidate is not None and candidate.is_file() else shutil.which("java")
    )
    if found is None:
        raise ServiceError(f"Apache Kafka needs Java, and no java was found: {_JDK_HINT}")
    try:
        done = subprocess.run(
            [found, "-version"], capture_output=True, text=True, timeout=30, check=False
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise ServiceError(f"cannot run {found} -version: {exc}") from exc
    version = _java_major(done.stderr + done.stdout)
    if version is None or version < _MIN_JAVA:
        raise ServiceError(
            f"Apache Kafka {KAFKA_VERSION} needs Java {_MIN_JAVA}+; {found} is "
            f"{version if version is not None else 'of unknown version'}: {_JDK_HINT}"
        )
    return Path(found)


def _java_major(banner: str) -> int | None:
    """The major version in ``java -version``'s banner ('17.0.15' -> 17, '1.8.0' -> 8)."""
    match = re.search(r'version "(\d+)(?:\.(\d+))?', banner)
    if match is None:
        return None
    major = int(match.group(1))
    return int(match.group(2) or 0) if major == 1 else major


@contextlib.contextmanager
def locked(folder: Path) -> Iterator[None]:
    """Hold ``folder``'s lock file (made with the folder if missing): of two processes that
    both find a cache empty, one fetches and the other waits, then finds it filled."""
    folder.mkdir(parents=True, exist_ok=True)
    with (folder / ".lock").open("a") as fh:
        fcntl.flock(fh.fileno(), fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh.fileno(), fcntl.LOCK_UN)


def ensure_kafka_jars(cache_dir: Path | None = None, version: str = KAFKA_VERSION) -> Path:
    """The folder of Kafka ``version``'s jars, fetched with Maven on first use only.

    Raises ServiceError naming what is missing (Maven, the network) and how to fix it.
    """
    root = (cache_dir or default_cache_dir()) / f"kafka-{version}"
    lib = root / "lib"
    if (root / _MARKER).is_file():
        return lib
    with locked(root):
        if (root / _MARKER).is_file():  # another starter fetched it while we waited
            return lib
        _fetch(root, lib, version)
    return lib


def _fetch(root: Path, lib: Path, version: str) -> None:
    mvn = shutil.which("mvn")
    if mvn is None:
        raise ServiceError(
            f"Apache Kafka {version}'s jars are not cached in {root} and Maven is not "
            "installed to fetch them: apt-get install maven (needs Maven Central once)"
        )
    with tempfile.TemporaryDirectory(prefix="fetch-", dir=root) as work:
        pom = Path(work) / "pom.xml"
        pom.write_text(
            _POM.format(kafka=version, log4j=_LOG4J_VERSION, slf4j=_SLF4J_VERSION),
            encoding="utf-8",
        )
        staging = Path(work) / "lib"
        argv = [
            mvn,
            "-B",
            "-q",
            "-f",
            str(pom),
            "dependency:copy-dependencies",
            f"-DoutputDirectory={staging}",
            "-DincludeScope=runtime",
        ]
        try:
            done = subprocess.run(
                argv, capture_output=True, text=True, timeout=_FETCH_TIMEOUT_S, check=False
            )
        except subprocess.TimeoutExpired as exc:
            raise ServiceError(
                f"fetching Apache Kafka {version} with Maven took over {_FETCH_TIMEOUT_S:.0f} s; "
                "check that Maven Central is reachable and run the command again"
            ) from exc
        jars = sorted(staging.glob("*.jar")) if staging.is_dir() else []
        if done.returncode != 0 or not any(p.name.startswith("kafka_2.13-") for p in jars):
            tail = "\n".join((done.stdout + done.stderr).strip().splitlines()[-15:])
            raise ServiceError(
                f"Maven could not fetch Apache Kafka {version} (exit {done.returncode}); "
                f"it needs Maven Central once, then the jars are reused from {root}:\n{tail}"
            )
        if lib.exists():
            shutil.rmtree(lib)
        staging.rename(lib)
    (root / _MARKER).write_text("\n".join(p.name for p in jars) + "\n", encoding="utf-8")


def main() -> None:
    """Fetch (or find) the jars and print where (scripts/test.sh runs it before pytest)."""
    try:
        java_executable()
        print(f"Apache Kafka {KAFKA_VERSION} jars: {ensure_kafka_jars()}")
    except ServiceError as exc:
        raise SystemExit(f"error: {exc}") from None
