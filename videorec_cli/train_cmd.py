"""`videorec train [DATASET] --arch NAME`: train a model of the zoo (one process or DDP).

Settings come from four layers, later over earlier: the defaults, ``--recipe NAME``,
``--config FILE`` and the flags the user typed (only those: a flag left at its default
never hides a config's value). ``--print-config`` prints the resolved settings, each
with where it came from, and exits; a run's ``settings.json`` is itself a config.
"""
from __future__ import annotations

import sys
from typing import Dict, List, Optional

import typer

from ops.common.options import MODEL_OPTION_HELP

# Parameters of the command that are not train settings.
LAUNCH_PARAMS = ("nproc_per_node", "nnodes", "node_rank", "master_addr", "master_port", "config", "recipe",
                 "print_config")
# Named model-option flags (parameter -> flag), turned into ``model_options`` by given_options.
MODEL_FLAGS = {"dropout": "--dropout", "shift_div": "--shift-div", "shift_place": "--shift-place",
               "temporal_pool": "--temporal-pool", "consensus": "--consensus", "glance_arch": "--glance-arch",
               "patch_size": "--patch-size", "hidden_dim": "--hidden-dim", "stn_hidden_dim": "--stn-hidden-dim",
               "global_lr_ratio": "--global-lr-ratio", "stn_lr_ratio": "--stn-lr-ratio",
               "classifier_lr_ratio": "--classifier-lr-ratio", "sample": "--sample"}


def command(
    ctx: typer.Context,
    dataset: Optional[str] = typer.Argument(None, help="Dataset name from `videorec datasets`, or a custom dataset .json file (may come from --config or --recipe)."),
    arch: Optional[str] = typer.Option(None, "--arch", "-a", help="Model name from `videorec models` (may come from --config or --recipe)."),
    config: Optional[str] = typer.Option(None, "--config", help="YAML or JSON file of train settings (a run's settings.json is one); flags override it."),
    recipe: Optional[str] = typer.Option(None, "--recipe", help="A named recipe from `videorec recipes`; --config and flags override it; its lr is scaled linearly to this run's global batch."),
    print_config: bool = typer.Option(False, "--print-config", help="Print the resolved settings (with where each comes from) and exit."),
    num_segments: Optional[int] = typer.Option(None, "--num-segments", help="Segments (2D models) or frames (3D models); default: the model's."),
    epochs: int = typer.Option(50, help="Epochs to train."),
    batch_size: int = typer.Option(8, "--batch-size", "-b", help="Clips per process per step (global batch = this x processes)."),
    lr: float = typer.Option(0.01, help="Learning rate of the global batch (yours is not scaled: scale it yourself; a --recipe's lr is scaled linearly to this run's global batch unless --lr is given)."),
    optimizer: str = typer.Option("sgd", help="sgd (with --momentum, the papers' recipes) or adamw (quick training from scratch)."),
    lr_scheduler: str = typer.Option("step", help="step (x0.1 at --lr-steps) or cos."),
    lr_steps: List[float] = typer.Option([20.0, 40.0], help="Epochs where the step schedule divides the lr by 10 (repeat the flag)."),
    warmup_epochs: float = typer.Option(0.0, help="Linear warm-up from lr/100 over this many epochs."),
    wd: float = typer.Option(5e-4, "--wd", "--weight-decay", help="Weight decay (never on BatchNorm parameters and biases)."),
    momentum: float = typer.Option(0.9, help="SGD momentum."),
    gd: Optional[float] = typer.Option(20.0, "--gd", "--clip-gradient", help="Clip the gradients' total L2 norm to this (0 = off)."),
    npb: bool = typer.Option(False, "--npb", "--no-partialbn", help="Turn partial BN off. TSM semantics: partial BN (every BatchNorm but the first frozen) is ON unless --npb, for the models that have it; on a model without partial BN (3D models) --npb is an error."),
    dropout: Optional[float] = typer.Option(None, help="Dropout before the classifier; default: the model's."),
    dense_sample: bool = typer.Option(False, "--dense-sample", help="Dense (I3D-style) sampling instead of TSN segments."),
    workers: int = typer.Option(2, "--workers", "-j", help="Data-loading worker processes per process."),
    eval_freq: int = typer.Option(5, help="Validate every this many epochs (and after the last)."),
    tune_from: Optional[str] = typer.Option(None, help="Fine-tune from a checkpoint; a classifier of another class count is dropped (and said so)."),
    resume: Optional[str] = typer.Option(None, help="'auto' (continue the run folder's last.pth, if any) or a checkpoint path."),
    seed: int = typer.Option(0, help="Random seed (model init, data order, augmentation)."),
    amp: bool = typer.Option(False, help="Mixed precision (float16 on CUDA, bfloat16 on CPU)."),
    sync_bn: bool = typer.Option(False, "--sync-bn", help="Synchronised BatchNorm across processes (2+ processes on CUDA only). Without it BatchNorm statistics are per process, so they depend on the per-process batch: 1- and 2-process runs differ."),
    output_dir: str = typer.Option("runs/run", "--output-dir", "-o", help="Run folder: checkpoints, log.txt, settings.json, tensorboard."),
    pretrained: str = typer.Option("none", help="none, imagenet (torchvision backbone weights) or a checkpoint path."),
    root: Optional[str] = typer.Option(None, help="Dataset root (overrides the registry)."),
    train_list: Optional[str] = typer.Option(None, help="Train list file (overrides the registry; relative to the root)."),
    val_list: Optional[str] = typer.Option(None, help="Val list file (overrides the registry; relative to the root)."),
    frame_template: Optional[str] = typer.Option(None, help="Frame file template, e.g. img_{:05d}.jpg."),
    crop_size: Optional[int] = typer.Option(None, help="Crop size; default: the model's (224 for most)."),
    scale_size: Optional[int] = typer.Option(None, help="Short side before val/test crops; default crop x 256/224."),
    decoder: str = typer.Option("auto", help="Video decoder: auto (the fastest usable; see `videorec doctor`), pyav, decord or torchcodec."),
    decode_device: str = typer.Option("cpu", help="Decode videos on cpu or cuda (torchcodec on NVDEC, in the main process: --workers 0)."),
    strict_data: bool = typer.Option(False, "--strict-data", help="Fail on the first unreadable sample instead of replacing it."),
    max_iters_per_epoch: Optional[int] = typer.Option(None, help="Cap the optimiser steps per epoch (quick runs, benchmarks)."),
    device: str = typer.Option("auto", help="auto, cpu or cuda."),
    shift_div: Optional[int] = typer.Option(None, help="TSM: shift 1/shift-div of the channels each way (default 8)."),
    shift_place: Optional[str] = typer.Option(None, help="TSM: blockres (residual branch, default) or block."),
    temporal_pool: Optional[bool] = typer.Option(None, "--temporal-pool", help="TSM: halve T before layer2 (ResNet)."),
    consensus: Optional[str] = typer.Option(None, help="TSN/TSM segment consensus: avg (default) or identity."),
    glance_arch: Optional[str] = typer.Option(None, help="AdaFocusV2: glance network mbv2 or res50."),
    patch_size: Optional[int] = typer.Option(None, help="AdaFocusV2: focus patch size (96, 128, 160, 192)."),
    hidden_dim: Optional[int] = typer.Option(None, help="AdaFocusV2: classifier hidden size."),
    stn_hidden_dim: Optional[int] = typer.Option(None, help="AdaFocusV2: policy hidden size."),
    global_lr_ratio: Optional[float] = typer.Option(None, help="AdaFocusV2: lr multiplier of the glance network."),
    stn_lr_ratio: Optional[float] = typer.Option(None, help="AdaFocusV2: lr multiplier of the policy network (default 0.01)."),
    classifier_lr_ratio: Optional[float] = typer.Option(None, help="AdaFocusV2: lr multiplier of the exit classifiers."),
    sample: Optional[bool] = typer.Option(None, "--sample", help="AdaFocusV2: coarse-to-fine frame order (early exit sees the whole video sooner)."),
    model_option: List[str] = typer.Option([], "--model-option", "-m", help=MODEL_OPTION_HELP),
    nproc_per_node: int = typer.Option(1, "--nproc-per-node", help="Processes on this node (DDP through torch.distributed.run)."),
    nnodes: int = typer.Option(1, help="Nodes taking part (DDP)."),
    node_rank: int = typer.Option(0, help="Rank of this node (DDP)."),
    master_addr: str = typer.Option("127.0.0.1", help="Address of node 0 (DDP)."),
    master_port: int = typer.Option(29500, help="Port on node 0 (DDP)."),
    mixup: float = typer.Option(0.0, help="Mixup: Beta(A, A) weight of each clip with another of the batch (0 = off)."),
    cutmix: float = typer.Option(0.0, help="CutMix: Beta(A, A) area kept, one box on every frame of a clip (0 = off); with --mixup each step picks one."),
    label_smoothing: float = typer.Option(0.0, help="Label smoothing E (0 = off); multi-label targets move towards 0.5."),
    randaugment: Optional[str] = typer.Option(None, help="RandAugment N,M on train clips (N ops at magnitude M of 30, the same on every frame), e.g. 2,9."),
    repeated_aug: int = typer.Option(1, help="Repeated augmentation: each sampled video K times per epoch, differently augmented, spread over the processes (1 = off)."),
    accumulate: int = typer.Option(1, help="Micro-batches per optimiser step: effective batch K x --batch-size x processes."),
    checkpoint_activations: bool = typer.Option(False, "--checkpoint-activations", help="Recompute the backbone stages' activations in the backward pass (less memory, ~30%% more compute)."),
    channels_last: bool = typer.Option(False, "--channels-last", help="Channels-last memory format (2D models: the folded N*T batch; 3D models: channels_last_3d)."),
    compile: bool = typer.Option(False, "--compile", help="torch.compile the model; falls back to eager (with one log line) where compiling fails."),
    log_interval: int = typer.Option(50, help="Steps between reads of the running loss/accuracy from the device (progress bar, tensorboard)."),
) -> None:
    """Train ARCH on DATASET; validate, save last.pth/best.pth; resumable and interruptible."""
    from ops.engine.config_file import defaults_of, format_config, load_and_validate, merge, nest_flat, validate_keys
    from ops.engine.config import TrainSettings
    from ops.engine.distributed import env_ranks, launch, launched

    # only what the user typed (typer vendors click: the source is compared by name)
    typed = {name: value for name, value in ctx.params.items()
             if getattr(ctx.get_parameter_source(name), "name", "") == "COMMANDLINE"}
    explicit = command_line_settings(typed)
    flags = validate_keys(nest_flat(explicit), TrainSettings, "command line")
    recipe_obj = None
    if recipe:
        from ops.engine.recipes import get_recipe

        recipe_obj = get_recipe(recipe)
    res = merge(defaults_of(TrainSettings), recipe_obj.settings if recipe_obj else None,
                load_and_validate(config) if config else None, flags,
                recipe_label=f"recipe {recipe}", config_label=f"config {config}")
    settings = res.settings()
    notes: List[str] = []
    if recipe_obj is not None and res.origin.get("lr") == f"recipe {recipe}":
        from ops.engine.recipes import scale_lr

        world = env_ranks()[1] if launched() else nproc_per_node * nnodes
        settings.lr, message = scale_lr(recipe_obj, settings.batch_size * world * settings.accumulate)
        res.values["lr"], res.origin["lr"] = settings.lr, f"recipe {recipe}, scaled to the global batch"
        notes.append(message)
    settings.check()
    check_model_options(settings, res.origin, typed)
    if print_config:
        typer.echo(format_config(res), nl=False)
        raise typer.Exit(0)
    if not launched():
        from ops.engine.distributed import device_type
        from ops.engine.trainer import check_sync_bn

        check_sync_bn(settings.sync_bn, nproc_per_node * nnodes, device_type(settings.device))  # before any process
        if nproc_per_node > 1 or nnodes > 1:
            raise typer.Exit(launch(nproc_per_node, nnodes, node_rank, master_addr, master_port, sys.argv[1:]))
    from ops.engine.trainer import TrainingInterrupted, train

    try:
        train(settings, notes)
    except TrainingInterrupted as exc:
        if exc.announce:
            typer.echo(str(exc), err=True)
        raise typer.Exit(128 + exc.signum)


def _named_model_flags(typed: Dict[str, object]) -> Dict[str, object]:
    return {MODEL_FLAGS[name]: value for name, value in typed.items() if name in MODEL_FLAGS}


def command_line_settings(typed: Dict[str, object]) -> Dict[str, object]:
    """The typed parameters as flat settings (TrainSettings/DataSettings field names); the named
    model flags and ``-m`` pairs become ``model_options``; ``--gd 0`` is None (off)."""
    from ops.common.options import given_options

    named, pairs = _named_model_flags(typed), typed.get("model_option", [])
    # an option given twice (e.g. -m num_segments=4 --num-segments 8) is an error
    given_options({**named, "--num-segments": typed.get("num_segments"), "--npb": typed.get("npb") or None}, pairs)
    out = {name: value for name, value in typed.items()
           if name not in MODEL_FLAGS and name not in LAUNCH_PARAMS and name != "model_option"}
    if "lr_steps" in out:
        out["lr_steps"] = list(out["lr_steps"])
    if "gd" in out:
        out["gd"] = out["gd"] or None
    options = given_options(named, pairs).values
    if options:
        out["model_options"] = options
    return out


def check_model_options(settings, origin: Dict[str, str], typed: Dict[str, object]) -> None:
    """Every model option of the resolved settings applies to the model, else a
    :class:`~ops.common.errors.UserError` naming the flag (or the config/recipe key) that gave it."""
    from ops.common.options import GivenOptions, given_options

    typed_flags = given_options(_named_model_flags(typed), typed.get("model_option", [])).flags
    given = GivenOptions()

    def add(key: str, value: object, dotted: str, flag: str) -> None:
        source = origin.get(dotted, "flag")
        given.values[key] = value
        given.flags[key] = flag if source == "flag" else f"{dotted} (from {source})"

    for key, value in settings.model_options.items():
        add(key, value, f"model_options.{key}", typed_flags.get(key, f"-m {key}={value}"))
    if settings.data.num_segments is not None:
        add("num_segments", settings.data.num_segments, "data.num_segments", f"--num-segments {settings.data.num_segments}")
    if settings.npb:
        add("partial_bn", False, "npb", "--npb")
    given.check(settings.arch)
