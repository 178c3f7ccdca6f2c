"""`videorec weights [PATTERN]`: the released-weights catalog, with what is cached."""
from __future__ import annotations

import typer


def command(
    pattern: str = typer.Argument("*", help="Shell pattern on weights names, e.g. 'mvfnet*' or '*_k400*'."),
    verbose: bool = typer.Option(False, "--verbose", "-v", help="Also show options, URL, cache path, source, notes."),
) -> None:
    """List released checkpoints: model, dataset, test protocol, published numbers, cached or not."""
    from archs.weights import list_weights
    from ops.common.download import cached_file

    entries = list_weights(pattern)
    if not entries:
        raise typer.BadParameter(f"no weights match {pattern!r}; `videorec weights` lists them all")
    typer.echo(f"{'weights':<28} {'arch':<18} {'dataset':<12} {'protocol':<20} {'published':<22} cached")
    for entry in entries:
        path = cached_file(entry)
        cached = "yes" if path.is_file() else ("manual" if entry.manual else "no")
        typer.echo(f"{entry.name:<28} {entry.arch:<18} {entry.dataset:<12} {entry.protocol:<20} "
                   f"{entry.published.summary():<22} {cached}")
        if verbose:
            options = ", ".join(f"{k}={v}" for k, v in entry.options.items()) or "defaults"
            changes = ", ".join(f"{k}={v}" for k, v in entry.protocol_overrides.items())
            protocol = entry.protocol + (f" with {changes}" if changes else "")
            typer.echo(f"    options: {options}; input: {dict(entry.spec) or 'as the model'}, "
                       f"{entry.channel_order.upper()}; protocol: {protocol}")
            typer.echo(f"    {'page (fetch by hand)' if entry.manual else 'url'}: {entry.url}")
            typer.echo(f"    file: {path}; sha256: {entry.sha256 or 'recorded at first download'}")
            typer.echo(f"    source: {entry.published.source}" + (f"; {entry.notes}" if entry.notes else ""))
