"""`videorec recipes [PATTERN]`: the seeds' training recipes (for `videorec train --recipe NAME`)."""
from __future__ import annotations

import typer


def command(
    pattern: str = typer.Argument("*", help="Shell pattern on recipe names, e.g. 'msn*'."),
    details: bool = typer.Option(False, "--details", help="Also print each recipe's full settings, source and notes."),
) -> None:
    """List the named recipes: model, dataset, schedule, batch (per GPU x GPUs), lr, wd and sampling."""
    import json

    from ops.common.errors import UserError
    from ops.engine.recipes import list_recipes

    recipes = list_recipes(pattern)
    if not recipes:
        raise UserError(f"no recipe matches {pattern!r}; `videorec recipes` lists them all")
    typer.echo(f"{'recipe':<18} {'model':<11} {'dataset':<12} {'epochs':>6}  {'schedule':<24} {'batch':<12} "
               f"{'lr':>7} {'wd':>7}  sampling")
    for r in recipes:
        s = r.settings
        batch = f"{s['batch_size']}x{r.gpus}={r.global_batch}"
        typer.echo(f"{r.name:<18} {s['arch']:<11} {s['data']['dataset']:<12} {s['epochs']:>6}  {r.schedule():<24} "
                   f"{batch:<12} {s['lr']:>7g} {s['wd']:>7g}  {r.sampling()}")
        if details:
            typer.echo(f"  {r.description}\n  source: {r.source}")
            if r.notes:
                typer.echo(f"  notes: {r.notes}")
            typer.echo("  settings: " + json.dumps(s, sort_keys=True))
    typer.echo("The lr is for the recipe's global batch (per-GPU batch x GPUs); train scales it linearly to yours.")
