"""The README's "Using it" shell blocks, pasted as they are into one bash, on a new folder.

The blocks marked ``<!-- pasted by the tests -->`` ("Using it", "Registry and
deployments", the drift report) run in order, then the one marked ``pasted last``, which
stops the worker and the services: what a new user following the README does, start to
end, with nothing edited. Only the web port is chosen here (``PHOENIX_WEB_PORT``, which
the blocks use), so that a worker already on 6066 cannot answer in our place.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

from readme_blocks import bash_blocks

from phoenix_stream.tools.worker_process import free_port

TIMEOUT_S = 600.0  # bounds a failing run only: about a minute on an idle machine


def _script() -> str:
    return "".join(bash_blocks("pasted by the tests") + bash_blocks("pasted last by the tests"))


def _environment(port: int) -> dict[str, str]:
    # Nothing of this run's own settings (the suite's services, prefixes) may leak in.
    kept = {k: v for k, v in os.environ.items() if not k.startswith("PHOENIX_")}
    return {**kept, "PHOENIX_WEB_PORT": str(port)}


def _stop_leftovers(folder: Path, env: dict[str, str], shell: subprocess.Popen[str]) -> None:
    """After a failed run: the worker (in the shell's process group), then the services."""
    if shell.poll() is None:
        os.killpg(shell.pid, signal.SIGKILL)
        shell.wait(timeout=30)
    try:
        os.killpg(shell.pid, signal.SIGTERM)  # a background worker the shell left behind
    except ProcessLookupError:
        pass
    subprocess.run(
        [sys.executable, "-m", "phoenix_stream", "services", "down"],
        cwd=folder,
        env=env,
        capture_output=True,
        timeout=120,
    )


def test_the_using_it_blocks_run_as_they_are(tmp_path: Path) -> None:
    folder = tmp_path / "checkout"
    folder.mkdir()
    # `source .venv/bin/activate`, run from the repository's folder: the same venv here.
    (folder / ".venv").symlink_to(Path(sys.prefix), target_is_directory=True)
    env = _environment(free_port())
    shell = subprocess.Popen(
        ["bash", "-e", "-c", _script()],
        cwd=folder,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,  # its own process group: the worker it starts is in it
    )
    try:
        output, _ = shell.communicate(timeout=TIMEOUT_S)
    except subprocess.TimeoutExpired:
        output = ""
    finally:
        stopped_cleanly = shell.returncode == 0
        if not stopped_cleanly:
            _stop_leftovers(folder, env, shell)
    worker_log = folder / "worker.log"
    tail = worker_log.read_text(errors="replace")[-3000:] if worker_log.exists() else ""
    assert shell.returncode == 0, f"{output}\n--- worker.log (end) ---\n{tail}"

    assert "Traceback" not in output
    assert "error:" not in output
    assert "seeded 100000 entities" in output
    predictions = [
        json.loads(line) for line in output.splitlines() if line.startswith('{"topic":"')
    ]
    assert len(predictions) == 2
    assert {p["topic"] for p in predictions} == {"phoenix.predictions"}
    assert all(p["value"]["model"] == "credit-risk" for p in predictions)
    # the decisions, each through the worker's admin API with the exported token
    assert "challenger 2 (shadow 0%)" in output
    assert "challenger 2 (canary 1%)" in output
    assert "challenger 2 (ab 50%)" in output
    assert "champion 2\n" in output
    assert '"champion": "2"' in output  # the worker's GET /v1/deployments after promote
    # registry list, before the deploys and after the promote: the roles the worker serves
    rows = [line.split() for line in output.splitlines() if line.startswith("credit-risk ")]
    listed = [words[:3] for words in rows if words[1].isdigit()]
    assert listed == [
        ["credit-risk", "1", "champion"],
        ["credit-risk", "2", "challenger"],
        ["credit-risk", "1", "-"],
        ["credit-risk", "2", "champion"],
    ]
    assert "no worker answered" not in output  # the roles came from the worker
    # the default agents hold no drift monitor: the report says so, and which to enable
    assert "credit-risk: no drift reports yet" in output
    assert "warning: this worker does not run the drift agents (PHOENIX_AGENTS)" in output
    # services down, last: everything this README run started is stopped
    assert [(line.split()[0], "stopped" in line.split()) for line in output.splitlines()[-3:]] == [
        ("broker", True),
        ("redis", True),
        ("postgres", True),
    ]
