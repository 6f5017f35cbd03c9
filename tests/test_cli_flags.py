"""Every subcommand's flags parse before TensorFlow or Beam loads: `--help` and flag errors answer at once."""

import importlib
import json
import subprocess
import sys

import pytest

from impasto.cli import SUBCOMMANDS

HEAVY_MODULES = ("tensorflow", "keras", "apache_beam", "ai_edge_litert")
"""What takes seconds to import (TF Serving's protocol buffers alone do not load TensorFlow)."""

LOADED_AFTER = """
import importlib, io, json, sys
from contextlib import redirect_stderr, redirect_stdout
from impasto.cli import main
with redirect_stdout(io.StringIO()) as out, redirect_stderr(io.StringIO()) as err:
    try:
        code = main(sys.argv[1:])
    except SystemExit as exit:
        code = exit.code
heavy = sorted(name for name in {heavy!r} if name in sys.modules)
print(json.dumps({{"code": code, "stdout": out.getvalue(), "stderr": err.getvalue(), "heavy": heavy}}))
"""


def run_impasto_and_list_heavy_modules(*argv: str) -> dict:
    """Runs `impasto ARGV` in a fresh interpreter: its exit code, output and the heavy modules it loaded."""
    finished = subprocess.run([sys.executable, "-c", LOADED_AFTER.format(heavy=HEAVY_MODULES), *argv],
                              capture_output=True, text=True, timeout=60, check=True)
    return json.loads(finished.stdout)


@pytest.mark.parametrize("command", sorted(SUBCOMMANDS))
def test_help_answers_without_loading_tensorflow_or_beam(command):
    result = run_impasto_and_list_heavy_modules(command, "--help")
    assert result["code"] == 0
    assert result["stdout"].startswith(f"usage: impasto {command}")
    assert result["heavy"] == []


@pytest.mark.parametrize("argv, named", [
    (("train", "--style", "s.jpg", "--data", "d", "--out", "o", "--steps", "many"), "--steps"),
    (("export", "great_wave", "--target", "tpu"), "--target"),
    (("serve", "--port", "eighty"), "--port"),
    (("stylize", "photo.jpg", "--pooling", "min"), "--pooling"),
    (("client", "photo.jpg", "--out", "o", "--server", "h:1"), "--model"),
    (("batch", "--input", "i", "--output", "o", "--model", "m", "--assign", "all", "--", "--runner=Direct"),
     "--assign"),
    (("prepare-data", "--input", "i", "--output", "o"), "--shards"),
])
def test_flag_errors_exit_2_naming_the_flag_without_loading_tensorflow_or_beam(argv, named):
    result = run_impasto_and_list_heavy_modules(*argv)
    assert result["code"] == 2
    assert named in result["stderr"]
    assert result["heavy"] == []


def test_good_flags_go_on_to_the_command_which_loads_what_it_needs():
    result = run_impasto_and_list_heavy_modules("stylize", "--list-models")
    assert result["code"] == 0
    assert "starry_night" in result["stdout"]
    assert "tensorflow" in result["heavy"]


@pytest.mark.parametrize("command", sorted(SUBCOMMANDS))
def test_each_command_runs_with_the_parser_of_its_flags_module(command):
    subcommand = SUBCOMMANDS[command]
    runner = importlib.import_module(subcommand.runner)
    assert runner.build_parser is importlib.import_module(subcommand.flags).build_parser
