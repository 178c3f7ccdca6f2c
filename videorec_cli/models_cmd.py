"""`videorec models`: the model zoo with aliases, options, input spec, parameters and GFLOPs per view.

torch and the zoo are imported inside the command, so `videorec --help` and
`videorec models --help` need neither.
"""
from __future__ import annotations

import typer


def command(
    pattern: str = typer.Argument("*", help="Shell pattern on model names, e.g. 'movinet*'."),
    num_classes: int = typer.Option(400, help="Classifier size used for the parameter count."),
    measure: bool = typer.Option(True, help="Measure params and GFLOPs (builds each model on the meta device)."),
) -> None:
    """List registered models: aliases, input (segments x frames, crop), params (M), GFLOPs (GMACs) per view,
    and the options each takes (`videorec train -m KEY=VALUE`) with their defaults."""
    from archs.profile import profile_model
    from archs.registry import get_entry, list_models

    names = list_models(pattern)
    if not names:
        raise typer.BadParameter(f"no model matches {pattern!r}")
    typer.echo(f"{'model':<22} {'family':<10} {'aliases':<16} {'input (T x L, crop)':<22} {'params(M)':>10} "
               f"{'GFLOPs':>9}  description")
    for name in names:
        entry = get_entry(name)
        row = profile_model(name, num_classes) if measure else None
        spec = row.spec if row else None
        shape = f"{spec.num_segments} x {spec.frames_per_segment}, {spec.crop_size}" if spec else "-"
        params = f"{row.params / 1e6:.3f}" if row else "-"
        gmacs = f"{row.gmacs:.2f}" if row and row.gmacs is not None else "-"
        aliases = ", ".join(entry.aliases) or "-"
        typer.echo(f"{name:<22} {entry.family:<10} {aliases:<16} {shape:<22} {params:>10} {gmacs:>9}  "
                   f"{entry.description}")
        options = ", ".join(f"{key}={value}" for key, value in sorted(entry.options.items()))
        typer.echo(f"{'':<22} options: {options or 'none'}")
