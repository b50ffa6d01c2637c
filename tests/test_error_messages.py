"""Library messages name parameters as keywords; the command line reads them as options."""

import pytest

from cladec_cli import artifacts
from cladec_cli.errors import UsageError, counted, for_cli, option
from cladec_cli.training import TrainSettings


def test_marked_parameters_read_as_keywords_in_python_and_as_options_on_the_command_line():
    error = UsageError(f"{option('batch_size', 0)} is too small; pass {option('trust')} or {option('overwrite')}")
    assert str(error) == "`batch_size` 0 is too small; pass `trust` or `overwrite`"
    assert for_cli(error) == "--batch-size 0 is too small; pass --trust-model or --overwrite"


def test_library_errors_speak_of_keywords(tmp_path):
    with pytest.raises(UsageError) as caught:
        TrainSettings(epochs=1, batch_size=0)
    assert str(caught.value).startswith("`batch_size` must be at least 1")
    assert for_cli(caught.value).startswith("--batch-size must be at least 1")
    target = tmp_path / "metrics.json"
    target.write_text("{}")
    with pytest.raises(UsageError) as caught:
        artifacts.write_json(target, {})
    assert "--" not in str(caught.value) and "pass --overwrite" in for_cli(caught.value)


def test_counts_agree_with_their_nouns():
    assert [counted(n, "row") for n in (0, 1, 2)] == ["0 rows", "1 row", "2 rows"]
    assert counted(1, "class", "classes") == "1 class" and counted(3, "class", "classes") == "3 classes"
