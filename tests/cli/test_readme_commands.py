"""The README's command list and the CLI's own options agree, both ways."""

from __future__ import annotations

import re
from pathlib import Path

import typer.main

from nucscale.cli import app

README = Path(__file__).resolve().parents[2] / "README.md"


def _readme_block() -> dict[str, set[str]]:
    """Options per command in the README's "## Commands" block (the indented lines)."""
    text = README.read_text().split("## Commands\n", 1)[1]
    block = []
    for line in text.splitlines()[1:]:
        if line and not line.startswith("    "):
            break
        block.append(line)
    options: dict[str, set[str]] = {}
    command = ""
    for line in block:
        m = re.match(r"\s+nucscale (\[[^]]*\] )*(\w+(?: [a-z]+)?)", line)  # "classify train"
        if m:  # "nucscale [--verbose] [--version] COMMAND": the top-level options
            command = "" if m.group(2) == "COMMAND" else m.group(2)
        options.setdefault(command, set()).update(re.findall(r"--[a-z][a-z-]*", line))
    return options


def _cli() -> dict[str, list[set[str]]]:
    """Per command, each option's names (an alias such as --model/--segmenter, or a flag's
    --tune/--no-tune, is one option); a group's commands as "group command"."""
    group = typer.main.get_command(app)

    def names(params: list) -> list[set[str]]:
        found = [{o for o in p.opts + p.secondary_opts if o.startswith("--")} for p in params]
        return [n for n in found if n and n != {"--help"}]

    out = {"": names(group.params)}
    for name, cmd in group.commands.items():  # type: ignore[attr-defined]
        for sub, subcmd in getattr(cmd, "commands", {}).items():
            out[f"{name} {sub}"] = names(subcmd.params)
        if not hasattr(cmd, "commands"):
            out[name] = names(cmd.params)
    return out


def test_every_command_and_option_of_the_cli_is_in_the_readme_and_no_other() -> None:
    readme, cli = _readme_block(), _cli()
    assert set(readme) == set(cli), set(readme) ^ set(cli)
    for command, params in cli.items():
        missing = [sorted(n) for n in params if not n & readme[command]]
        assert not missing, f"README lacks {command or 'nucscale'} {missing}"
        unknown = readme[command] - set().union(*params)
        assert not unknown, f"README names {command or 'nucscale'} {sorted(unknown)} the CLI lacks"
