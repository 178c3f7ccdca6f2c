"""The seeds' and the reference repositories' training recipes as named presets.

A :class:`Recipe` is data: the train settings of one published command or config file
(keys of :class:`ops.engine.config.TrainSettings`, data settings nested under ``data``,
model options under ``model_options``), the number of GPUs it assumed and where it
comes from. ``batch_size`` is per GPU (per process), as our ``--batch-size``; the
recipe's global batch is ``batch_size x gpus`` and its ``lr`` belongs to that global
batch. :func:`scale_lr` scales it linearly to the global batch a user really runs.

Repositories with DataParallel (TSM, AdaFocusV2) give the global batch on their
command line; it is split here over the GPUs they used. PySlowFast's ``BATCH_SIZE``
(X3D, VoV3D) is global too. What our trainer does differently from a source is said
in the recipe's ``notes``.
"""
from __future__ import annotations

import fnmatch
from dataclasses import dataclass
from typing import Any, Dict, List, Mapping, Tuple

from ops.common.errors import UserError


@dataclass(frozen=True)
class Recipe:
    name: str
    description: str
    gpus: int
    settings: Mapping[str, Any]
    source: str
    notes: str = ""

    @property
    def global_batch(self) -> int:
        return int(self.settings["batch_size"]) * self.gpus

    @property
    def lr(self) -> float:
        return float(self.settings["lr"])

    def schedule(self) -> str:
        """The lr schedule in words, e.g. ``step 30/45/55`` or ``cos, warm-up 35``."""
        s = self.settings
        if s.get("lr_scheduler", "step") == "step":
            text = "step " + "/".join(f"{e:g}" for e in s["lr_steps"])
        else:
            text = "cos"
        warmup = s.get("warmup_epochs", 0)
        return text + (f", warm-up {warmup:g}" if warmup else "")

    def sampling(self) -> str:
        data = self.settings["data"]
        if data.get("dense_sample"):
            return f"{data['num_segments']} frames x stride {data.get('dense_stride') or 'default'}"
        return f"{data['num_segments']} segments"


def _tsn_family(arch: str, dataset: str, *, epochs: int, lr: float, lr_steps: List[float], batch: int, wd: float,
                dropout: float, num_segments: int = 8, **extra_options) -> Dict[str, Any]:
    """The shared command line of TSM, TDN and MSN: SGD 0.9, gd 20, step lr x0.1, partial BN
    off (``--npb``), ImageNet backbone, 224 crops from 256, TSN segments, validation every epoch."""
    return {"arch": arch, "pretrained": "imagenet", "epochs": epochs, "batch_size": batch, "lr": lr,
            "optimizer": "sgd", "lr_scheduler": "step", "lr_steps": lr_steps, "warmup_epochs": 0.0, "wd": wd,
            "momentum": 0.9, "gd": 20.0, "npb": True, "eval_freq": 1,
            "model_options": {"dropout": dropout, **extra_options},
            "data": {"dataset": dataset, "num_segments": num_segments, "crop_size": 224, "scale_size": 256,
                     "dense_sample": False, "workers": 4}}


def _slowfast(arch: str, dataset: str, *, epochs: int, warmup: float, batch: int, dense: bool,
              scale_size: int) -> Dict[str, Any]:
    """PySlowFast's X3D/VoV3D solver: SGD 0.9, BASE_LR 0.1, cosine after a linear warm-up,
    wd 5e-5 (none on BatchNorm), no gradient clipping, dropout 0.5, 16 frames, from scratch."""
    data = {"dataset": dataset, "num_segments": 16, "crop_size": 224, "scale_size": scale_size,
            "dense_sample": dense, "workers": 8}
    if dense:
        data["dense_stride"] = 5
    return {"arch": arch, "pretrained": "none", "epochs": epochs, "batch_size": batch, "lr": 0.1, "optimizer": "sgd",
            "lr_scheduler": "cos", "lr_steps": [], "warmup_epochs": warmup, "wd": 5e-5, "momentum": 0.9, "gd": None,
            "eval_freq": 10 if dataset == "kinetics" else 2, "model_options": {"dropout": 0.5}, "data": data}


def _adafocus(dataset: str, *, lr: float, batch: int) -> Dict[str, Any]:
    """AdaFocusV2's scripts/train.sh (MobileNetV2 glance, patch 128): SGD 0.9, cosine lr
    without warm-up, wd 1e-4, no gradient clipping, 16 segments, per-part lr ratios."""
    return {"arch": "adafocusv2", "pretrained": "imagenet", "epochs": 50, "batch_size": batch, "lr": lr,
            "optimizer": "sgd", "lr_scheduler": "cos", "lr_steps": [], "warmup_epochs": 0.0, "wd": 1e-4,
            "momentum": 0.9, "gd": None, "eval_freq": 1,
            "model_options": {"glance_arch": "mbv2", "patch_size": 128, "dropout": 0.2, "fc_dropout": 0.2,
                              "hidden_dim": 1024, "stn_hidden_dim": 2048, "global_lr_ratio": 0.5,
                              "stn_lr_ratio": 0.1, "classifier_lr_ratio": 5.0, "coarse_to_fine": True},
            "data": {"dataset": dataset, "num_segments": 16, "crop_size": 224, "scale_size": 256,
                     "dense_sample": False, "workers": 8}}


TSM_README = "mit-han-lab/temporal-shift-module README.md (Training)"
TDN_README = "MCG-NJU/TDN README.md (Training)"
MSN_README = "seed 001 (MSN README, Training)"
SLOWFAST_X3D = "facebookresearch/SlowFast configs/Kinetics/X3D_M.yaml"
VOV3D = "youngwanLEE/VoV3D configs/"
ADAFOCUS = "LeapLabTHU/AdaFocusV2 'Experiments on ActivityNet, FCVID and Mini-Kinetics/scripts/train.sh' (seed 004)"
SOMETHING_ONE_COMMAND = "The README gives one Something-Something command (dataset `something`); V2 uses it as is."
SLOWFAST_NOTES = ("PySlowFast starts the warm-up at 0.01 (lr/10), ours at lr/100; its train crops jitter the short "
                  "side in [256, 320] before a 224 crop, ours are TSN multi-scale crops.")

RECIPES: Dict[str, Recipe] = {r.name: r for r in [
    Recipe("tsm_k400", "TSM ResNet-50 8 segments on Kinetics-400", 8,
           _tsn_family("tsm_r50", "kinetics", epochs=50, lr=0.02, lr_steps=[20.0, 40.0], batch=16, wd=1e-4,
                       dropout=0.5, shift_div=8, shift_place="blockres", consensus_type="avg"),
           TSM_README, "--batch-size 128 with DataParallel on 8 GPUs: 16 per GPU."),
    *[Recipe(f"tsm_{short}", f"TSM ResNet-50 8 segments on Something-Something {ver}", 8,
             _tsn_family("tsm_r50", dataset, epochs=50, lr=0.01, lr_steps=[20.0, 40.0], batch=8, wd=5e-4,
                         dropout=0.5, shift_div=8, shift_place="blockres", consensus_type="avg"),
             TSM_README, "--batch-size 64 with DataParallel on 8 GPUs: 8 per GPU; wd is main.py's default 5e-4. "
             + SOMETHING_ONE_COMMAND)
      for short, ver, dataset in (("ssv1", "V1", "something"), ("ssv2", "V2", "somethingv2"))],
    *[Recipe(f"tdn_{short}", f"TDN ResNet-50 8 segments on Something-Something {ver}", 8,
             _tsn_family("tdn_r50", dataset, epochs=60, lr=0.01, lr_steps=[30.0, 45.0, 55.0], batch=8, wd=5e-4,
                         dropout=0.5),
             TDN_README, SOMETHING_ONE_COMMAND)
      for short, ver, dataset in (("ssv1", "V1", "something"), ("ssv2", "V2", "somethingv2"))],
    Recipe("tdn_k400", "TDN ResNet-50 8 segments on Kinetics-400", 8,
           _tsn_family("tdn_r50", "kinetics", epochs=100, lr=0.02, lr_steps=[50.0, 75.0, 90.0], batch=16, wd=1e-4,
                       dropout=0.5),
           TDN_README),
    *[Recipe(f"msn_{short}", f"MSN ResNet-50 8 segments on Something-Something {ver}", 2,
             _tsn_family("msn_r50", dataset, epochs=60, lr=0.01, lr_steps=[30.0, 45.0, 55.0], batch=8, wd=5e-4,
                         dropout=0.5),
             MSN_README, "" if dataset == "something" else SOMETHING_ONE_COMMAND)
      for short, ver, dataset in (("ssv1", "V1", "something"), ("ssv2", "V2", "somethingv2"))],
    Recipe("msn_k400", "MSN ResNet-50 8 segments on Kinetics-400", 2,
           _tsn_family("msn_r50", "kinetics", epochs=100, lr=0.02, lr_steps=[50.0, 75.0, 90.0], batch=8, wd=1e-4,
                       dropout=0.5),
           MSN_README),
    Recipe("mvfnet_k400_8x8", "MVFNet ResNet-50 8x8 (dense) on Kinetics-400", 8,
           {"arch": "mvfnet_r50", "pretrained": "imagenet", "epochs": 150, "batch_size": 12, "lr": 0.015,
            "optimizer": "sgd", "lr_scheduler": "step", "lr_steps": [90.0, 130.0], "warmup_epochs": 10.0,
            "wd": 1e-4, "momentum": 0.9, "gd": 40.0, "npb": True, "eval_freq": 10,
            "model_options": {"dropout": 0.5, "alpha": 0.125},
            "data": {"dataset": "kinetics", "num_segments": 8, "dense_sample": True, "dense_stride": 8,
                     "crop_size": 224, "scale_size": 256, "workers": 4}},
           "whwu95/MVFNet configs/MVFNet/K400/mvf_kinetics400_2d_rgb_r50_dense.py (seed 000)",
           "Config: 12 videos per GPU x 8, SGD with Nesterov momentum (ours is plain momentum), warm-up 25070 "
           "iterations (about 10 epochs at 96 clips per step), RandomResizedCrop (ours: TSN multi-scale crop)."),
    Recipe("x3d_m_k400", "X3D-M 16x5 on Kinetics-400 (PySlowFast, 300 epochs)", 8,
           _slowfast("x3d_m", "kinetics", epochs=300, warmup=35.0, batch=16, dense=True, scale_size=256),
           SLOWFAST_X3D, "TRAIN.BATCH_SIZE 128 on 8 GPUs: 16 per GPU. " + SLOWFAST_NOTES),
    Recipe("x3d_m_ssv2", "X3D-M 16 frames on Something-Something V2 (VoV3D's baseline)", 8,
           _slowfast("x3d_m", "somethingv2", epochs=100, warmup=1.0, batch=8, dense=False, scale_size=224),
           VOV3D + "SSv2/x3d/x3d_M.yaml (seed 003)",
           "TRAIN.BATCH_SIZE 64 on 8 GPUs: 8 per GPU; uniform sampling; the config turns random flips off "
           "(ours flips with Something's label swap). " + SLOWFAST_NOTES),
    *[Recipe(f"vov3d_{size}_k400", f"VoV3D-{size.upper()} 16x5 on Kinetics-400 (256 epochs)", 8,
             _slowfast(f"vov3d_{size}", "kinetics", epochs=256, warmup=35.0, batch=16, dense=True, scale_size=256),
             VOV3D + f"Kinetics/vov3d/vov3d_{size.upper()}.yaml (seed 003)",
             "TRAIN.BATCH_SIZE 128 on 8 GPUs: 16 per GPU. " + SLOWFAST_NOTES)
      for size in ("m", "l")],
    *[Recipe(f"vov3d_{size}_ssv2", f"VoV3D-{size.upper()} 16 frames on Something-Something V2 (from scratch)", 8,
             _slowfast(f"vov3d_{size}", "somethingv2", epochs=100, warmup=1.0, batch=8, dense=False, scale_size=256),
             VOV3D + f"SSv2/vov3d/vov3d_{size.upper()}_F16.yaml (seed 003)",
             "TRAIN.BATCH_SIZE 64 on 8 GPUs: 8 per GPU; uniform sampling; the config turns random flips off "
             "(ours flips with Something's label swap). " + SLOWFAST_NOTES)
      for size in ("m", "l")],
    Recipe("adafocusv2_actnet", "AdaFocusV2 (MobileNetV2 glance, patch 128) on ActivityNet", 4,
           _adafocus("actnet", lr=0.002, batch=8), ADAFOCUS,
           "--batch_size 32 with DataParallel on 4 GPUs: 8 per GPU."),
    Recipe("adafocusv2_fcvid", "AdaFocusV2 (MobileNetV2 glance, patch 128) on FCVID", 4,
           _adafocus("fcvid", lr=0.002, batch=8), ADAFOCUS,
           "--batch_size 32 with DataParallel on 4 GPUs: 8 per GPU."),
    Recipe("adafocusv2_minik", "AdaFocusV2 (MobileNetV2 glance, patch 128) on Mini-Kinetics", 4,
           _adafocus("minik", lr=0.003, batch=12), ADAFOCUS,
           "--batch_size 48 with DataParallel on 4 GPUs: 12 per GPU."),
]}


def list_recipes(pattern: str = "*") -> List[Recipe]:
    """Recipes whose name matches the shell ``pattern``, by name."""
    return [RECIPES[name] for name in sorted(RECIPES) if fnmatch.fnmatch(name, pattern)]


def get_recipe(name: str) -> Recipe:
    """The recipe called ``name``; :class:`UserError` naming close ones otherwise."""
    if name in RECIPES:
        return RECIPES[name]
    import difflib

    close = difflib.get_close_matches(name, list(RECIPES), n=3)
    hint = f"; did you mean {' or '.join(close)}?" if close else ""
    raise UserError(f"unknown recipe {name!r}{hint} (`videorec recipes` lists them)")


def scale_lr(recipe: Recipe, user_global_batch: int) -> Tuple[float, str]:
    """The recipe's lr scaled linearly to ``user_global_batch`` (clips per optimiser step,
    all processes and accumulation included), and the line the run log prints."""
    if user_global_batch <= 0:
        raise ValueError(f"global batch must be positive, not {user_global_batch}")
    assumed = f"global batch {recipe.global_batch} ({recipe.settings['batch_size']} x {recipe.gpus} GPUs)"
    if user_global_batch == recipe.global_batch:
        return recipe.lr, f"recipe {recipe.name}: lr {recipe.lr:g} for its {assumed}, the same as this run's"
    lr = recipe.lr * user_global_batch / recipe.global_batch
    return lr, (f"recipe {recipe.name}: lr {recipe.lr:g} is for its {assumed}; scaled linearly to {lr:.6g} for "
                f"this run's global batch {user_global_batch}")
