"""Entry point: the Typer app and its subcommands.

Each subcommand lives in its own module and exposes ``command``; this file only
wires them up and turns user errors into one line and a non-zero exit. Nothing
heavy (torch, the model zoo, the engine) is imported here or at the top of a
command module: ``videorec --help`` and every ``--help`` stay fast.
"""
from __future__ import annotations

import functools
import sys
from typing import Callable, Tuple, Type

import typer

from videorec_cli import datasets_cmd, demo_cmd, ensemble_cmd, models_cmd, predict_cmd, test_cmd, train_cmd
from videorec_cli import early_exit_cmd, extract_frames_cmd, make_annotations_cmd, make_synthetic_cmd
from videorec_cli import doctor_cmd, plot_cmd, recipes_cmd, stream_cmd, transcode_cmd, verify_cmd, weights_cmd
from videorec_cli import export_cmd, extract_features_cmd


class Interrupted(Exception):
    """Ctrl-C inside a command (Typer would turn a bare KeyboardInterrupt into a silent exit)."""


def interruptible(command: Callable) -> Callable:
    """``command`` with KeyboardInterrupt raised as :class:`Interrupted`, for :func:`main` to report."""

    @functools.wraps(command)
    def run(*args, **kwargs):
        try:
            return command(*args, **kwargs)
        except KeyboardInterrupt:
            raise Interrupted() from None

    return run

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
    ("weights", weights_cmd),
    ("verify", verify_cmd),
    ("plot", plot_cmd),
    ("recipes", recipes_cmd),
    ("transcode", transcode_cmd),
    ("doctor", doctor_cmd),
    ("export", export_cmd),
    ("extract-features", extract_features_cmd),
]:
    app.command(_name)(interruptible(_module.command))

# Errors a user can cause, by module and class name. An error of a module that was never
# imported cannot have been raised, so they are looked up among the loaded modules only
# (importing archs to catch its errors would cost a second on every run).
USER_ERRORS = [("ops.common.errors", "UserError"), ("archs.checkpoint", "CheckpointError"),
               ("archs.registry", "UnknownModelError"), ("archs.registry", "ModelOptionError"),
               ("dataset_configs", "DatasetConfigError")]


def user_error_types() -> Tuple[Type[BaseException], ...]:
    """The user-error classes of the modules loaded so far."""
    return tuple(getattr(sys.modules[module], name) for module, name in USER_ERRORS if module in sys.modules)


def main() -> None:
    """Console entry point: user errors print one line, not a traceback; Ctrl-C exits 130."""
    try:
        app()
    except (KeyboardInterrupt, Interrupted):
        print("videorec: interrupted", file=sys.stderr)
        sys.exit(130)
    except Exception as exc:
        if not isinstance(exc, user_error_types()):
            raise
        print(f"videorec: error: {exc}", file=sys.stderr)
        sys.exit(2)


if __name__ == "__main__":
    main()
