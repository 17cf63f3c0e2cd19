"""The README's shell blocks, for the tests that check and paste them.

A block preceded by ``<!-- pasted by the tests -->`` is run as it is, with the others so
marked, in one bash by tests/integration/test_readme.py; ``<!-- pasted last by the
tests -->`` marks the block that stops what they started. tests/unit/test_readme_commands.py
checks every block's ``phoenix-stream`` lines against the CLI.
"""

from __future__ import annotations

import re
import shlex
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
BLOCK = re.compile(
    r"^(?:<!-- (pasted(?: last)? by the tests) -->\n)?```bash\n(.*?)^```", re.M | re.S
)


def shell_words(line: str) -> list[str]:
    """A command line's words as the shell splits them, with ``;``, ``|``, ``>``, ... apart."""
    lexer = shlex.shlex(line, posix=True, punctuation_chars=True)
    lexer.whitespace_split = True
    return list(lexer)


def bash_blocks(marker: str | None = None) -> list[str]:
    """The README's bash blocks, in order; with ``marker``, only those marked so."""
    text = README.read_text(encoding="utf-8")
    return [body for mark, body in BLOCK.findall(text) if marker is None or mark == marker]
