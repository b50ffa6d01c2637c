"""Help that reads right: every command's summary and every option's help is a whole sentence with at
most one default."""

import re

import click
import pytest
from click.testing import CliRunner

from cladec_cli.cli.main import cli

COMMANDS = sorted(cli.commands)
TRAILING_BRACKETS = re.compile(r"(\s+\[[^\]]*\])+$")


def is_sentence(text):
    """Starts with a capital letter (or an option or number) and ends with a full stop, not an ellipsis."""
    text = text.strip()
    return bool(text) and (text[0].isupper() or text[0] in "-0123456789") and text.endswith(".") \
        and not text.endswith("..")


def command_summaries(width=80):
    """{command: summary} as `cladec --help` shows them in a terminal `width` columns wide."""
    result = CliRunner().invoke(cli, ["--help"], terminal_width=width)
    assert result.exit_code == 0, result.output
    listing = result.output.split("Commands:\n", 1)[1]
    summaries, current = {}, None
    for line in listing.splitlines():
        match = re.match(r"  (\S+)\s{2,}(.*)", line)
        if match and match.group(1) in cli.commands:
            current = match.group(1)
            summaries[current] = match.group(2)
        elif current and line.strip():
            summaries[current] += " " + line.strip()
    return summaries


def test_command_summaries_are_whole_sentences():
    summaries = command_summaries()
    assert sorted(summaries) == COMMANDS
    for name, summary in summaries.items():
        assert is_sentence(summary), f"{name}: {summary!r}"
    assert summaries["evaluate"].startswith("Measure explanation methods")


@pytest.mark.parametrize("name", ["cladec"] + COMMANDS)
def test_every_option_has_one_sentence_of_help_and_one_default(name):
    command = cli if name == "cladec" else cli.commands[name]
    ctx = click.Context(command, info_name=name)
    assert is_sentence(command.help or ""), f"{name}: {command.help!r}"
    for param in command.params:
        if not isinstance(param, click.Option) or param.hidden:
            continue
        record = param.get_help_record(ctx)
        assert record is not None, f"{name} {param.opts}"
        text = record[1]
        assert is_sentence(TRAILING_BRACKETS.sub("", text)), f"{name} {param.opts[0]}: {text!r}"
        assert text.count("default:") <= 1, f"{name} {param.opts[0]}: {text!r}"


def test_resize_batch_size_and_split_options_read_right():
    ctx = click.Context(cli.commands["train-decoder"], info_name="train-decoder")
    helps = {p.opts[0]: p.get_help_record(ctx)[1] for p in cli.commands["train-decoder"].params
             if isinstance(p, click.Option)}
    assert helps["--resize"].endswith("[default: the classifier's, else bilinear]")
    assert helps["--batch-size"].startswith("Images per training step.")
    assert helps["--split-seed"].endswith("[default: the classifier's]")


def test_only_commands_that_need_it_list_resume():
    """reproduce always resumes: it takes --resume from older scripts but does not list it."""
    lists = {name for name, command in cli.commands.items()
             if "--resume" in CliRunner().invoke(cli, [name, "--help"]).output}
    assert lists == {"train-classifier", "train-decoder", "train-refae", "demo"}
    assert "resumes when rerun" in cli.commands["reproduce"].help
