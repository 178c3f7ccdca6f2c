"""The command line: every subcommand has help, registries print, user errors are one line."""
import subprocess
import sys

import pytest
from typer.testing import CliRunner

from videorec_cli.main import app

COMMANDS = [command.name for command in app.registered_commands]


@pytest.mark.parametrize("name", COMMANDS)
def test_every_subcommand_has_help(name):
    result = CliRunner().invoke(app, [name, "--help"], terminal_width=200)
    assert result.exit_code == 0, result.output
    assert "Usage" in result.output


def test_datasets_and_models_tables():
    runner = CliRunner()
    datasets = runner.invoke(app, ["datasets"])
    assert datasets.exit_code == 0 and "somethingv2" in datasets.output and "mAP" in datasets.output
    models = runner.invoke(app, ["models", "tsm_r50", "--num-classes", "174"])
    assert models.exit_code == 0, models.output
    assert "23.865" in models.output and "32.70" in models.output


def test_user_error_is_one_line_and_nonzero(tmp_path):
    done = subprocess.run([sys.executable, "-m", "videorec_cli.main", "train", "kinetics", "--arch", "tsm_r18",
                           "--root", str(tmp_path)], capture_output=True, text=True)
    assert done.returncode == 2
    assert done.stderr.strip().count("\n") == 0 and "list file not found" in done.stderr
    done = subprocess.run([sys.executable, "-m", "videorec_cli.main", "train", "kinetics", "--arch", "nope"],
                          capture_output=True, text=True)
    assert done.returncode == 2 and "unknown model 'nope'" in done.stderr


def test_the_cli_imports_no_torch_until_a_command_runs():
    """`videorec --help` and every subcommand's --help stay fast: nothing heavy is imported with the app."""
    heavy = ("torch", "torchvision", "archs", "ops.engine.trainer", "ops.engine.tester", "ops.data.loader")
    done = subprocess.run([sys.executable, "-c", "import sys, videorec_cli.main; "
                           f"print(sorted(set({heavy!r}) & set(sys.modules)))"], capture_output=True, text=True)
    assert done.returncode == 0 and done.stdout.strip() == "[]", done.stdout + done.stderr
