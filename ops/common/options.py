"""Model options from the command line: ``-m/--model-option key=value`` and the named flags.

Every command that builds a model (train, test, predict, stream, early-exit) turns its
flags into a :class:`GivenOptions`: the options the user really gave, each with the
flag that gave it, so an option the model does not take is an error naming the flag,
the model and the options it does take. Nothing here imports torch or the model zoo at
import time (``videorec --help`` stays fast); :meth:`GivenOptions.check` loads the
registry when it runs.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Dict, Mapping, Sequence

from ops.common.errors import UserError

# Named flag -> the model option it sets. ``--npb`` (no partial BN) sets ``partial_bn=False``.
FLAG_OPTIONS: Dict[str, str] = {
    "--num-segments": "num_segments",
    "--test-segments": "num_segments",
    "--dropout": "dropout",
    "--npb": "partial_bn",
    "--shift-div": "shift_div",
    "--shift-place": "shift_place",
    "--temporal-pool": "temporal_pool",
    "--consensus": "consensus_type",
    "--glance-arch": "glance_arch",
    "--patch-size": "patch_size",
    "--hidden-dim": "hidden_dim",
    "--stn-hidden-dim": "stn_hidden_dim",
    "--global-lr-ratio": "global_lr_ratio",
    "--stn-lr-ratio": "stn_lr_ratio",
    "--classifier-lr-ratio": "classifier_lr_ratio",
    "--sample": "coarse_to_fine",
}

MODEL_OPTION_HELP = "Model builder option key=value (repeat the flag; e.g. width_mult=0.5); `videorec models` lists models."


def parse_value(text: str) -> object:
    """A ``-m`` value as int, float, bool (true/false) or string."""
    for cast in (int, float):
        try:
            return cast(text)
        except ValueError:
            continue
    return {"true": True, "false": False}.get(text.lower(), text)


@dataclass
class GivenOptions:
    """Model options the user gave: ``values`` (option -> value) and ``flags`` (option -> how it
    was given, e.g. ``--num-segments 32`` or ``-m width_mult=0.5``, for messages)."""

    values: Dict[str, object] = field(default_factory=dict)
    flags: Dict[str, str] = field(default_factory=dict)

    def check(self, arch: str) -> str:
        """Raise :class:`UserError` for an option ``arch`` does not take, naming the flag, the model
        and the options it takes. Returns the model's registered name (aliases resolved)."""
        from archs.registry import NOT_MODEL_OPTIONS, get_entry

        entry = get_entry(arch)
        for key, flag in self.flags.items():
            if key in NOT_MODEL_OPTIONS:
                raise UserError(f"{flag}: {key} is not a model option (it comes from the dataset or the weights)")
            if key not in entry.options:
                fixed = f"; {key} is fixed by the name {entry.name}" if key in entry.fixed else ""
                raise UserError(f"{flag} does not apply to {entry.name}{fixed}; it takes: "
                                f"{', '.join(sorted(entry.options)) or 'no options'}")
        return entry.name


def given_options(named: Mapping[str, object], pairs: Sequence[str] = ()) -> GivenOptions:
    """The options of the named flags (``{"--dropout": 0.3, "--npb": True, ...}``, None = not
    given; keys of :data:`FLAG_OPTIONS`) and of ``-m key=value`` pairs; an option given twice is an error."""
    given = GivenOptions()

    def add(key: str, value: object, flag: str) -> None:
        if key in given.flags:
            raise UserError(f"{flag} and {given.flags[key]} both set {key}; give it once")
        given.values[key], given.flags[key] = value, flag

    for flag, value in named.items():
        if value is None:
            continue
        shown = flag if isinstance(value, bool) else f"{flag} {value}"
        add(FLAG_OPTIONS[flag], (not value) if flag == "--npb" else value, shown)
    for pair in pairs:
        key, sep, text = pair.partition("=")
        if not sep or not key:
            raise UserError(f"-m/--model-option takes key=value, got {pair!r}")
        key = key.strip().replace("-", "_")
        add(key, parse_value(text.strip()), f"-m {key}={text.strip()}")
    return given

