"""The released-weights catalog: one entry per published checkpoint of the seed model zoos.

Each :class:`WeightsEntry` says everything needed to go from a row of a model-zoo
table to its number: the model (a registered arch and its options), where the file
comes from (a direct URL, or a page to fetch it from by hand), its sha256 where one
is published, the dataset and class count it was trained on, the input-spec
overrides it needs, the row's test protocol (a preset of
``ops.evaluation.protocols`` plus the row's own overrides) and the published
numbers with their source. Lookup is by name (:func:`get_weights`), listing by
shell pattern (:func:`list_weights`), in the spirit of torchvision's weight enums
and timm's pretrained configs.

Entries are plain data; building and checking their models is left to the
registry (:func:`validate_entry`). Downloading lives in ``ops.common.download``.
"""
from __future__ import annotations

import difflib
import fnmatch
import re
from dataclasses import dataclass, field, fields
from typing import Dict, List, Mapping, Optional

from archs.registry import InputSpec, ModelOptionError, UnknownModelError, check_options, resolve_name

# Where the published numbers come from (the seed READMEs are in shared/seeds/).
MVFNET_README = "MVFNet README, Model Zoo (seed 000)"
MOVINET_README = "MoViNet-pytorch README, Pretrained models (seed 002; Kinetics-600 numbers of the TF release)"
VOV3D_README = "VoV3D README, Main Result (seed 003)"
ADAFOCUS_README = "AdaFocusV2 README, ActivityNet/FCVID/Mini-Kinetics tables (seed 004)"
TSM_README = "temporal-shift-module README, Pretrained Models"
TDN_README = "TDN README, Model Zoo"

MOVINET_WEIGHTS = "https://github.com/Atze00/MoViNet-pytorch/blob/main/weights/{}?raw=true"
MVFNET_RELEASE = "https://github.com/whwu95/MVFNet/releases/download/v0.2/{}"
TSM_MODELS = "https://hanlab18.mit.edu/projects/tsm/models/{}"
DROPBOX = "https://dl.dropbox.com/s/{}"
ADAFOCUS_PAGE = "https://cloud.tsinghua.edu.cn/d/5f686486750f4cf6a11a/"
ADAFOCUS_FILES = {  # the four direct links of the repository's scripts/download_ckpt.sh
    "actnet_p96_mbv2.pth.tar": "https://cloud.tsinghua.edu.cn/f/035d25d123df4800b096/?dl=1",
    "actnet_p128_mbv2.pth.tar": "https://cloud.tsinghua.edu.cn/f/59da7071c3164e998597/?dl=1",
    "actnet_p160_mbv2.pth.tar": "https://cloud.tsinghua.edu.cn/f/cc1f676e621e45898418/?dl=1",
    "actnet_p96_res50.pth.tar": "https://cloud.tsinghua.edu.cn/f/c94f5c6e53d44c4dad43/?dl=1",
}
TDN_PAGES = {  # Google Drive folders (one per row): no direct link
    ("r50", "something", 8): "https://drive.google.com/drive/folders/12RpThsHQ-3F04fSu8hduM5b7FGnkEfnE",
    ("r50", "something", 16): "https://drive.google.com/drive/folders/1__HhId-WGIkrL7funwt9x8-PvA0jHs_2",
    ("r50", "somethingv2", 8): "https://drive.google.com/drive/folders/14pZ1W_Mh8nR4e1ziEz7AFpgbz-79HpIC",
    ("r50", "somethingv2", 16): "https://drive.google.com/drive/folders/1AQOyCiRR9I50YIKHYc5E9q29J1ROe22A",
    ("r101", "somethingv2", 8): "https://drive.google.com/drive/folders/1N4EojVdHFfNbEU_4WIkT_26d_mSHimmo",
    ("r101", "somethingv2", 16): "https://drive.google.com/file/d/1RBzJvE2tGZgnN8Yl4EGj2uFwMECTbIdn/view",
    ("r50", "kinetics", 8): "https://drive.google.com/drive/folders/1UALrg2ABFq-HGPdy8vgZ9mxqkSkuqWET",
    ("r50", "kinetics", 16): "https://drive.google.com/drive/folders/1p7NC4JjxaLzwfj1JUa4kkHd_KZBxBBYR",
    ("r101", "kinetics", 8): "https://drive.google.com/drive/folders/19KPmxPrdp0VS8fsliOr_8kLj1yfhoqRb",
    ("r101", "kinetics", 16): "https://drive.google.com/drive/folders/1a82RenTMhmtPI66Y21Xyrr00iVKL8GOC",
}

DATASET_TAGS = {"kinetics": "k400", "kinetics600": "k600", "something": "sthv1", "somethingv2": "sthv2",
                "actnet": "actnet", "fcvid": "fcvid", "minik": "minik"}
CLASSES = {"kinetics": 400, "kinetics600": 600, "something": 174, "somethingv2": 174, "actnet": 200, "fcvid": 239,
           "minik": 200}
SHA256 = re.compile(r"[0-9a-f]{64}")
NAME = re.compile(r"[a-z0-9_]+")  # no '.' or '/': a name never looks like a file path


def _percent(value: float) -> str:
    """As the tables print them: 76.0, 72.28."""
    text = f"{value:.2f}"
    return text[:-1] if text.endswith("0") else text


class UnknownWeightsError(UnknownModelError):
    """A weights name that is not in the catalog; the message names close matches."""


@dataclass(frozen=True)
class Published:
    """The numbers a model-zoo table gives for a row (percent), and which table."""

    top1: Optional[float] = None
    top5: Optional[float] = None
    mAP: Optional[float] = None
    source: str = ""

    def summary(self) -> str:
        """'top1 76.0 top5 92.3' or 'mAP 79.0'."""
        parts = [f"{k} {_percent(v)}" for k, v in (("top1", self.top1), ("top5", self.top5), ("mAP", self.mAP))
                 if v is not None]
        return " ".join(parts) or "-"


@dataclass(frozen=True)
class WeightsEntry:
    """One released checkpoint and the table row it reproduces.

    arch / options: the registered model and the options to build it with (checked by
    the registry). url: the file itself, or with ``manual`` the page to fetch it from by
    hand. file_name: the name in the cache. sha256: the published hash, or None (then
    recorded at the first download and checked afterwards). dataset / num_classes: a
    name of ``dataset_configs`` and its class count. spec: :class:`InputSpec` fields
    that differ from the model's own. protocol / protocol_overrides: the row's test
    protocol (a preset of ``ops.evaluation.protocols`` and the row's changes to it).
    channel_order: ``"bgr"`` where the reference fed BGR frames (VoV3D's Something
    configs). notes: what a user must know to reproduce the row.
    """

    name: str
    arch: str
    url: str
    file_name: str
    dataset: str
    num_classes: int
    protocol: str
    published: Published
    options: Mapping[str, object] = field(default_factory=dict)
    sha256: Optional[str] = None
    manual: bool = False
    spec: Mapping[str, object] = field(default_factory=dict)
    protocol_overrides: Mapping[str, object] = field(default_factory=dict)
    channel_order: str = "rgb"
    notes: str = ""

    def input_spec(self, model_spec: InputSpec) -> InputSpec:
        """The model's own spec with this row's overrides and channel order."""
        return model_spec.replace(**{**self.spec, "channel_order": self.channel_order})


_CATALOG: Dict[str, WeightsEntry] = {}


def register_weights(entry: WeightsEntry) -> WeightsEntry:
    """Add ``entry`` to the catalog (names are unique; a file name keeps one URL and hash)."""
    if entry.name in _CATALOG:
        raise ValueError(f"weights {entry.name!r} are registered twice")
    if not NAME.fullmatch(entry.name):
        raise ValueError(f"weights name {entry.name!r}: use lower-case letters, digits and '_'")
    if entry.sha256 is not None and not SHA256.fullmatch(entry.sha256):
        raise ValueError(f"weights {entry.name!r}: sha256 must be 64 lower-case hex digits")
    if entry.channel_order not in ("rgb", "bgr"):
        raise ValueError(f"weights {entry.name!r}: channel_order must be rgb or bgr")
    unknown = set(entry.spec) - {f.name for f in fields(InputSpec)}
    if unknown:
        raise ValueError(f"weights {entry.name!r}: {sorted(unknown)} are not InputSpec fields")
    for other in _CATALOG.values():
        if other.file_name == entry.file_name and (other.url, other.sha256) != (entry.url, entry.sha256):
            raise ValueError(f"weights {entry.name!r} and {other.name!r} share the file name {entry.file_name!r} "
                             "but not its URL and hash")
    _CATALOG[entry.name] = entry
    return entry


def unregister_weights(name: str) -> None:
    """Remove an entry (for entries a test or a user script registered)."""
    _CATALOG.pop(name, None)


def list_weights(pattern: str = "*") -> List[WeightsEntry]:
    """Catalog entries whose name matches a shell pattern, sorted by name."""
    return [_CATALOG[n] for n in sorted(_CATALOG) if fnmatch.fnmatch(n, pattern)]


def get_weights(name: str) -> WeightsEntry:
    """The entry called ``name``; :class:`UnknownWeightsError` names close matches."""
    if name in _CATALOG:
        return _CATALOG[name]
    close = difflib.get_close_matches(name, list(_CATALOG), n=5, cutoff=0.6)
    family = [n for n in sorted(_CATALOG) if n.startswith(name.split("_")[0] + "_") and n not in close]
    close += family[: 5 - len(close)]
    hint = f" Close: {', '.join(close)}." if close else ""
    raise UnknownWeightsError(f"unknown weights {name!r}; `videorec weights` lists them.{hint}")


def validate_entry(entry: WeightsEntry) -> None:
    """Check an entry against the registry: the arch exists and takes every option.

    Raises :class:`UnknownModelError` or :class:`ModelOptionError` naming the entry."""
    try:
        arch = resolve_name(entry.arch)
        check_options(arch, entry.options)
    except (UnknownModelError, ModelOptionError) as exc:
        raise type(exc)(f"weights {entry.name}: {exc}") from None
    if entry.num_classes < 1:
        raise ValueError(f"weights {entry.name}: num_classes must be positive")


# ----------------------------------------------------------------------------- the seed tables


def _entry(name: str, arch: str, dataset: str, url: str, file_name: str, protocol: str, published: Published,
           **rest) -> None:
    register_weights(WeightsEntry(name=name, arch=arch, url=url, file_name=file_name, dataset=dataset,
                                  num_classes=CLASSES[dataset], protocol=protocol, published=published, **rest))


def _mvfnet() -> None:
    """MVFNet R50/R101, dense T x stride (64 // T) clips on Kinetics-400; 10 clips x 3 crops at 256."""
    top1 = {("50", 4): 74.2, ("50", 8): 76.0, ("50", 16): 77.0, ("101", 4): 76.0, ("101", 8): 77.4, ("101", 16): 78.4}
    for (depth, frames), acc in top1.items():
        file_name = f"R{depth}_{frames}x{64 // frames}.pth"
        _entry(f"mvfnet_r{depth}_k400_{frames}x{64 // frames}", f"mvfnet_r{depth}", "kinetics",
               MVFNET_RELEASE.format(file_name), file_name, "mvfnet-30view", Published(top1=acc, source=MVFNET_README),
               options={"num_segments": frames})


def _movinet() -> None:
    """MoViNet A0-A5 base and A0-A2 stream: the port's conversion of the TF Kinetics-600 weights."""
    rows = {("a0", False): (72.28, 90.92), ("a1", False): (76.69, 93.40), ("a2", False): (78.62, 94.17),
            ("a3", False): (81.79, 95.67), ("a4", False): (83.48, 96.16), ("a5", False): (84.27, 96.39),
            ("a0", True): (72.05, 90.63), ("a1", True): (76.45, 93.25), ("a2", True): (78.40, 94.05)}
    for (variant, stream), (top1, top5) in rows.items():
        arch = f"movinet_{variant}" + ("_stream" if stream else "")
        file_name = f"model{variant.upper()}_{'stream_' if stream else ''}statedict_v3"
        _entry(f"{arch}_k600", arch, "kinetics600", MOVINET_WEIGHTS.format(file_name), file_name,
               "movinet-whole-video", Published(top1=top1, top5=top5, source=MOVINET_README),
               notes="numbers of the TF release on Kinetics-600 (the port checks equal outputs, not accuracy)")


def _x3d_vov3d() -> None:
    """X3D (PySlowFast and VoV3D's retraining) and VoV3D-M/L: Kinetics-400 and Something V1/V2."""
    k400 = [  # (name, arch, url, top1, top5, extra)
        ("x3d_m_k400", "x3d_m", "https://dl.fbaipublicfiles.com/pyslowfast/x3d_models/x3d_m.pyth", 76.0, 92.3,
         {"notes": "PySlowFast 300-epoch model; PySlowFast's MODEL_ZOO gives 76.2 (30-view)"}),
        ("x3d_m_k400_256e", "x3d_m", DROPBOX.format("s87lnn7ch4a6e47/x3d_M_256e_k400.pth"), 75.0, 92.1, {}),
        ("vov3d_m_k400", "vov3d_m", DROPBOX.format("hpk172nbvm3w5p1/vov3d_M_k400.pth"), 73.9, 91.6, {}),
        ("x3d_l_k400", "x3d_l", "https://dl.fbaipublicfiles.com/pyslowfast/x3d_models/x3d_l.pyth", 77.5, 92.9,
         {"protocol_overrides": {"scale_size": 356},
          "notes": "PySlowFast X3D_L: trained at 312, tested 10 x 3 at 356"}),
        ("vov3d_l_k400", "vov3d_l", DROPBOX.format("lzmq8d4dqyj8fj6/vov3d_L_k400.pth"), 76.3, 92.9, {}),
    ]
    for name, arch, url, top1, top5, extra in k400:
        _entry(name, arch, "kinetics", url, url.rsplit("/", 1)[1], "x3d-30view",
               Published(top1=top1, top5=top5, source=VOV3D_README), **extra)
    # Something V1/V2: TSN-style segments, 2 clips x 3 crops; BGR input except X3D-L's configs.
    something = {
        "something": [("x3d_m", 16, "lb9uvj4tl19xzmn/x3d_M_ssv1.pth", 46.4, 75.3),
                      ("vov3d_m", 16, "usbcudmhpknqvtd/vov3d_M_f16_ssv1.pth", 48.1, 76.9),
                      ("vov3d_m", 32, "fvet69zyeswe25v/vov3d_M_f32_ssv1.pth", 49.8, 78.0),
                      ("vov3d_m", 32, "etri:kdhawuidbrbd.C59lPfB2Toul7wcFMk1yeQ", 52.6, 80.4),
                      ("x3d_l", 16, "yixwwfv6mv2bpnd/x3d_L_ssv1.pth", 47.0, 76.4),
                      ("vov3d_l", 16, "bdjam5tyaedkczl/vov3d_L_f16_ssv1.pth", 49.5, 78.0),
                      ("vov3d_l", 32, "g6lc5sj8h7f2r5v/vov3d_L_f32_ssv1.pth", 50.6, 78.7),
                      ("vov3d_l", 32, "etri:kdhawuidbrbd.r2fJ4HSDSWmFYNo1ARZuHQ", 54.9, 82.3)],
        "somethingv2": [("x3d_m", 16, "b6gjywzrn85sa89/x3d_M_ssv2.pth", 63.0, 87.9),
                        ("vov3d_m", 16, "hz34ltdl6iukdxc/vov3d_M_f16_ssv2.pth", 63.2, 88.2),
                        ("vov3d_m", 32, "z6qtyjgf0v13jnq/vov3d_M_f32_ssv2.pth", 64.2, 88.8),
                        ("vov3d_m", 32, "etri:kdhawuidbrbd.PHQw3KwbRI-lIcopWjm-ew", 65.2, 89.4),
                        ("x3d_l", 16, "iaqwbejrkbd7372/x3d_L_ssv2.pth", 62.7, 87.7),
                        ("vov3d_l", 16, "678efl8zyrmq7ch/vov3d_L_f16_ssv2.pth", 64.1, 88.6),
                        ("vov3d_l", 32, "f4330e5htdiwqa5/vov3d_L_f32_ssv2.pth", 65.8, 89.5),
                        ("vov3d_l", 32, "etri:kdhawuidbrbd.pEg57hjpSkOp2boe1oNZvQ", 67.3, 90.5)],
    }
    for dataset, rows in something.items():
        tag = DATASET_TAGS[dataset]
        for arch, frames, link, top1, top5 in rows:
            name = f"{arch}_{tag}_{frames}f"
            extra: Dict[str, object] = {"spec": {"sampling": "segment", "crop_size": 224, "scale_size": 256},
                                        "channel_order": "rgb" if arch == "x3d_l" else "bgr"}
            if arch.startswith("vov3d"):
                extra["options"] = {"num_segments": frames}
            else:  # VoV3D's X3D Something configs test at 224
                extra["protocol_overrides"] = {"scale_size": 224}
            if (arch, dataset) == ("x3d_m", "somethingv2"):
                extra["notes"] = "the config tests 1 clip x 1 crop; the table's GFLOPs (6.1x6) say 6 views"
            if link.startswith("etri:"):
                name += "_k400pt"
                url, file_name = f"https://etri.gov-dooray.com/share/drive-files/{link[5:]}", f"{name}.pth"
                extra.update(manual=True, notes="fine-tuned from the Kinetics-400 model; a share page, "
                                                "download by hand")
            else:
                url, file_name = DROPBOX.format(link), link.rsplit("/", 1)[1]
            _entry(name, arch, dataset, url, file_name, "ssv2-2x3",
                   Published(top1=top1, top5=top5, source=VOV3D_README), **extra)


def _adafocus() -> None:
    """AdaFocusV2 (16 frames, coarse-to-fine order as the released runs' ``--sample``)."""
    rows = [("actnet", "mbv2", 96, 77.4), ("actnet", "mbv2", 128, 79.0), ("actnet", "mbv2", 160, 79.9),
            ("actnet", "res50", 96, 77.5), ("actnet", "res50", 128, 78.9), ("actnet", "res50", 160, 80.2),
            ("fcvid", "mbv2", 128, 85.0), ("fcvid", "res50", 128, 84.5),
            ("minik", "mbv2", 128, 75.4), ("minik", "res50", 128, 74.0)]
    for dataset, glance, patch, number in rows:
        file_name = f"{dataset}_p{patch}_{glance}.pth.tar"
        url = ADAFOCUS_FILES.get(file_name, ADAFOCUS_PAGE)
        metric = {"top1": number} if dataset == "minik" else {"mAP": number}
        _entry(f"adafocusv2_{glance}_{dataset}_p{patch}", "adafocusv2", dataset, url, file_name, "tsn-1x1",
               Published(source=ADAFOCUS_README, **metric), manual=url == ADAFOCUS_PAGE,
               options={"glance_arch": glance, "patch_size": patch, "num_segments": 16, "coarse_to_fine": True,
                        "dropout": 0.2, "fc_dropout": 0.2})


def _tsm() -> None:
    """TSN/TSM checkpoints of the temporal-shift-module README (RGB models our archs build)."""
    kinetics = [  # (name, arch, segments, file, protocol, top1)
        ("tsn_r50_k400_8f", "tsn_r50", 8, "TSM_kinetics_RGB_resnet50_avg_segment5_e50.pth", "tsn-1x1", 68.8),
        ("tsn_r50_k400_8f_10crop", "tsn_r50", 8, "TSM_kinetics_RGB_resnet50_avg_segment5_e50.pth", "tsn-10crop", 69.9),
        ("tsn_r50_k400_8f_dense", "tsn_r50", 8, "TSM_kinetics_RGB_resnet50_avg_segment5_e50.pth", "tsm-10x3", 70.6),
        ("tsm_r50_k400_8f", "tsm_r50", 8, "TSM_kinetics_RGB_resnet50_shift8_blockres_avg_segment8_e50.pth",
         "tsn-1x1", 71.2),
        ("tsm_r50_k400_8f_10crop", "tsm_r50", 8, "TSM_kinetics_RGB_resnet50_shift8_blockres_avg_segment8_e50.pth",
         "tsn-10crop", 72.8),
        ("tsm_r50_k400_16f", "tsm_r50", 16, "TSM_kinetics_RGB_resnet50_shift8_blockres_avg_segment16_e50.pth",
         "tsn-1x1", 72.6),
        ("tsm_r50_k400_16f_10crop", "tsm_r50", 16, "TSM_kinetics_RGB_resnet50_shift8_blockres_avg_segment16_e50.pth",
         "tsn-10crop", 73.7),
        ("tsm_r50_k400_8f_dense", "tsm_r50", 8, "TSM_kinetics_RGB_resnet50_shift8_blockres_avg_segment8_e100_dense.pth",
         "tsm-10x3", 74.1),
        ("tsm_mbv2_k400_8f_dense", "tsm_mbv2", 8,
         "TSM_kinetics_RGB_mobilenetv2_shift8_blockres_avg_segment8_e100_dense.pth", "tsm-10x3", 69.5),
    ]
    for name, arch, segments, file_name, protocol, top1 in kinetics:
        extra = {"spec": {"sampling": "dense", "dense_stride": 64 // segments}} if protocol == "tsm-10x3" else {}
        _entry(name, arch, "kinetics", TSM_MODELS.format(file_name), file_name, protocol,
               Published(top1=top1, source=TSM_README), options={"num_segments": segments}, **extra)
    something = [  # (dataset, backbone, segments, top1 centre crop x 1 clip or None, top1 3 crops x 2 clips)
        ("something", "resnet50", 8, 45.6, 47.2), ("something", "resnet50", 16, 47.2, 48.4),
        ("something", "resnet101", 8, 46.9, 48.7), ("somethingv2", "resnet50", 8, None, 61.2),
        ("somethingv2", "resnet50", 16, None, 63.1), ("somethingv2", "resnet101", 8, None, 63.3)]
    for dataset, backbone, segments, one_clip, two_clips in something:
        arch = f"tsm_r{backbone[6:]}"
        file_name = f"TSM_{dataset}_RGB_{backbone}_shift8_blockres_avg_segment{segments}_e45.pth"
        base = f"{arch}_{DATASET_TAGS[dataset]}_{segments}f"
        rows = [(base, "tsn-1x1", one_clip), (f"{base}_2clip", "tsm-2x3", two_clips)] if one_clip else \
            [(base, "tsm-2x3", two_clips)]
        for name, protocol, top1 in rows:
            _entry(name, arch, dataset, TSM_MODELS.format(file_name), file_name, protocol,
                   Published(top1=top1, source=TSM_README), options={"num_segments": segments})


def _tdn() -> None:
    """TDN R50/R101 (Google Drive folders: fetched by hand)."""
    rows = [  # (depth, dataset, segments, protocol, top1, top5)
        ("r50", "something", 8, "center-crop-1clip", 52.3, 80.6),
        ("r50", "something", 16, "center-crop-1clip", 53.9, 82.1),
        ("r50", "somethingv2", 8, "center-crop-1clip", 64.0, 88.8),
        ("r50", "somethingv2", 16, "center-crop-1clip", 65.3, 89.7),
        ("r101", "somethingv2", 8, "center-crop-1clip", 65.8, 90.2),
        ("r101", "somethingv2", 8, "full-res-1x3", 67.1, 90.5),
        ("r101", "somethingv2", 16, "center-crop-1clip", 66.9, 90.9),
        ("r101", "somethingv2", 16, "full-res-1x3", 68.2, 91.6),
        ("r50", "kinetics", 8, "30-view", 76.6, 92.8), ("r50", "kinetics", 16, "30-view", 77.5, 93.2),
        ("r101", "kinetics", 8, "30-view", 77.5, 93.6), ("r101", "kinetics", 16, "30-view", 78.5, 93.9),
    ]
    for depth, dataset, segments, protocol, top1, top5 in rows:
        base = f"tdn_{depth}_{DATASET_TAGS[dataset]}_{segments}f"
        _entry(base + ("_3crop" if protocol == "full-res-1x3" else ""), f"tdn_{depth}", dataset,
               TDN_PAGES[(depth, dataset, segments)], f"{base}.pth.tar", protocol,
               Published(top1=top1, top5=top5, source=TDN_README), manual=True, options={"num_segments": segments},
               notes="Google Drive: download the checkpoint by hand and save it under the name shown")


for _family in (_mvfnet, _movinet, _x3d_vov3d, _adafocus, _tsm, _tdn):
    _family()
