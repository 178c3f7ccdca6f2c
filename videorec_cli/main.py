"""Entry point: the Typer app and its subcommands.

Each subcommand lives in its own module and exposes ``command``; this file only
wires them up and turns user errors into one line and a non-zero exit.
"""
from __future__ import annotations

import sys

import typer

from videorec_cli import datasets_cmd, demo_cmd, ensemble_cmd, models_cmd, predict_cmd, test_cmd, train_cmd
from videorec_cli import early_exit_cmd, extract_frames_cmd, make_annotations_cmd, make_synthetic_cmd
from videorec_cli import export_cmd, extract_features_cmd, stream_cmd

app = typer.Typer(
    name="videorec",
    help="Efficient video recognition: prepare datasets, train and test the model zoo, fuse scores.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)

# One line per subcommand: name, module.
for _name, _module in [
    ("demo", demo_cmd),
    ("datasets", datasets_cmd),
    ("models", models_cmd),
    ("train", train_cmd),
    ("test", test_cmd),
    ("ensemble-pkl", ensemble_cmd),
    ("predict", predict_cmd),
    ("extract-frames", extract_frames_cmd),
    ("make-annotations", make_annotations_cmd),
    ("make-synthetic", make_synthetic_cmd),
    ("early-exit", early_exit_cmd),
    ("stream", stream_cmd),
    ("export", export_cmd),
    ("extract-features", extract_features_cmd),
]:
    app.command(_name)(_module.command)


def main() -> None:
    """Console entry point: user errors print one line, not a traceback."""
    from archs.checkpoint import CheckpointError
    from archs.registry import UnknownModelError
    from dataset_configs import DatasetConfigError
    from ops.common.errors import UserError

    try:
        app()
    except (UserError, CheckpointError, DatasetConfigError, UnknownModelError) as exc:
        print(f"videorec: error: {exc}", file=sys.stderr)
        sys.exit(2)


if __name__ == "__main__":
    main()
