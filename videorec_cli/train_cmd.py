"""`videorec train DATASET --arch NAME`: train a model of the zoo (one process or DDP)."""
from __future__ import annotations

import sys
from typing import List, Optional

import typer

from ops.common.options import MODEL_OPTION_HELP


def command(
    dataset: str = typer.Argument(..., help="Dataset name from `videorec datasets`, or a custom dataset .json file."),
    arch: str = typer.Option(..., "--arch", "-a", help="Model name from `videorec models`."),
    num_segments: Optional[int] = typer.Option(None, "--num-segments", help="Segments (2D models) or frames (3D models); default: the model's."),
    epochs: int = typer.Option(50, help="Epochs to train."),
    batch_size: int = typer.Option(8, "--batch-size", "-b", help="Clips per process per step (global batch = this x processes)."),
    lr: float = typer.Option(0.01, help="Base learning rate (not scaled automatically: scale it with the global batch)."),
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
    max_iters_per_epoch: Optional[int] = typer.Option(None, help="Cap the steps per epoch (quick runs, benchmarks)."),
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
) -> None:
    """Train ARCH on DATASET; validate, save last.pth/best.pth; resumable and interruptible."""
    from ops.common.options import given_options
    from ops.engine.config import DataSettings, TrainSettings

    given = given_options({"--num-segments": num_segments, "--dropout": dropout, "--npb": npb or None,
                           "--shift-div": shift_div, "--shift-place": shift_place, "--temporal-pool": temporal_pool,
                           "--consensus": consensus, "--glance-arch": glance_arch, "--patch-size": patch_size,
                           "--hidden-dim": hidden_dim, "--stn-hidden-dim": stn_hidden_dim,
                           "--global-lr-ratio": global_lr_ratio, "--stn-lr-ratio": stn_lr_ratio,
                           "--classifier-lr-ratio": classifier_lr_ratio, "--sample": sample}, model_option)
    given.check(arch)
    from ops.engine.distributed import device_type, launch, launched
    from ops.engine.trainer import check_sync_bn

    if not launched():
        check_sync_bn(sync_bn, nproc_per_node * nnodes, device_type(device))  # before starting any process
        if nproc_per_node > 1 or nnodes > 1:
            raise typer.Exit(launch(nproc_per_node, nnodes, node_rank, master_addr, master_port, sys.argv[1:]))
    settings = TrainSettings(
        data=DataSettings(dataset=dataset, root=root, train_list=train_list, val_list=val_list,
                          frame_template=frame_template, crop_size=crop_size, scale_size=scale_size,
                          dense_sample=dense_sample, workers=workers, strict_data=strict_data,
                          decoder=decoder, decode_device=decode_device),
        arch=arch, model_options=given.values, pretrained=pretrained, epochs=epochs, batch_size=batch_size, lr=lr,
        optimizer=optimizer, lr_scheduler=lr_scheduler, lr_steps=list(lr_steps), warmup_epochs=warmup_epochs, wd=wd,
        momentum=momentum, gd=gd or None, eval_freq=eval_freq, tune_from=tune_from, resume=resume, seed=seed, amp=amp,
        sync_bn=sync_bn, device=device, output_dir=output_dir, max_iters_per_epoch=max_iters_per_epoch)
    from ops.engine.trainer import TrainingInterrupted, train

    try:
        train(settings)
    except TrainingInterrupted as exc:
        if exc.announce:
            typer.echo(str(exc), err=True)
        raise typer.Exit(128 + exc.signum)
