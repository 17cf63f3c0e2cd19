"""Every command line in the README's shell blocks is one our CLI accepts.

Blocks marked ``<!-- pasted by the tests -->`` are also run, as they are, by
tests/integration/test_readme.py; this test checks the others too (scenarios, bench, your
own cluster, Kafka), which take minutes or need what this machine has not got, against
the CLI's options without running them. A ``[--batch 100]`` in a command line, once in
the README, is an unexpected argument here.
"""

from __future__ import annotations

import click
import pytest
from readme_blocks import ROOT, bash_blocks, shell_words

from phoenix_stream.commands import cli


def our_command_lines() -> list[list[str]]:
    """Each ``phoenix-stream ...`` command in the blocks, as arguments, up to an operator."""
    commands = []
    for block in bash_blocks():
        for line in block.splitlines():
            words = shell_words(line)
            while words:
                if words[0] != "phoenix-stream":
                    break
                end = next((i for i, w in enumerate(words) if not w.strip("|&;<>")), len(words))
                commands.append(words[1:end])
                words = words[end + 1 :]
    return commands


def parse(args: list[str]) -> click.Context:
    """Parse ``args`` as ``phoenix-stream`` would, down to the command, without running it."""
    command: click.Command = cli
    ctx = cli.make_context("phoenix-stream", list(args))
    while isinstance(command, click.Group):
        protected = getattr(ctx, "_protected_args", None) or ctx.protected_args
        name, found, rest = command.resolve_command(ctx, [*protected, *ctx.args])
        assert found is not None and name is not None
        command = found
        ctx = found.make_context(name, rest, parent=ctx)
    return ctx


def test_the_readme_has_the_blocks_the_paste_test_runs() -> None:
    assert len(bash_blocks("pasted by the tests")) >= 3
    assert len(bash_blocks("pasted last by the tests")) == 1


def test_the_readme_shows_our_commands() -> None:
    names = {args[0] for args in our_command_lines() if args}
    assert {"services", "train", "seed", "worker", "simulate", "tail", "deploy"} <= names


@pytest.mark.parametrize("args", our_command_lines(), ids=lambda args: " ".join(args))
def test_each_command_line_parses(args: list[str]) -> None:
    parse(args)


def test_a_line_with_optional_brackets_is_refused() -> None:
    with pytest.raises(click.UsageError, match="unexpected extra"):
        parse(["simulate", "--rate", "500", "[--batch", "100]"])


def test_the_scripts_and_files_the_blocks_name_exist() -> None:
    for block in bash_blocks():
        for line in block.splitlines():
            for word in shell_words(line):
                if word.startswith("scripts/") or word == ".env.example":
                    assert (ROOT / word).is_file(), f"{word} in the README is not in the tree"
