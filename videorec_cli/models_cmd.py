"""`videorec models`: the model zoo with input spec, parameters and GFLOPs per view."""
from __future__ import annotations

import typer


def command(
    pattern: str = typer.Argument("*", help="Shell pattern on model names, e.g. 'movinet*'."),
    num_classes: int = typer.Option(400, help="Classifier size used for the parameter count."),
    measure: bool = typer.Option(True, help="Measure params and GFLOPs (builds each model on the meta device)."),
) -> None:
    """List registered models: input (segments x frames, crop), params (M) and GFLOPs (GMACs) per view."""
    from archs.profile import profile_model
    from archs.registry import get_entry, list_models

    names = list_models(pattern)
    if not names:
        raise typer.BadParameter(f"no model matches {pattern!r}")
    typer.echo(f"{'model':<22} {'family':<10} {'input (T x L, crop)':<22} {'params(M)':>10} {'GFLOPs':>9}  description")
    for name in names:
        entry = get_entry(name)
        row = profile_model(name, num_classes) if measure else None
        spec = row.spec if row else None
        shape = f"{spec.num_segments} x {spec.frames_per_segment}, {spec.crop_size}" if spec else "-"
        params = f"{row.params / 1e6:.3f}" if row else "-"
        gmacs = f"{row.gmacs:.2f}" if row and row.gmacs is not None else "-"
        typer.echo(f"{name:<22} {entry.family:<10} {shape:<22} {params:>10} {gmacs:>9}  {entry.description}")
