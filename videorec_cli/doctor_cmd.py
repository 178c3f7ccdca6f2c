"""`videorec doctor`: which decoders and which FFmpeg work here, and why the others do not."""
from __future__ import annotations

import typer


def command() -> None:
    """Probe every video decoder, the FFmpeg builds, the JPEG decoder and GPU decoding; never fails."""
    from ops.data.decoders.doctor import doctor_lines

    for line in doctor_lines():
        typer.echo(line)
