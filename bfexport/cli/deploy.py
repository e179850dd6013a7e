"""bfexport deploy: not built yet (see the issue tracker)."""

from __future__ import annotations

import click

from bfexport.errors import BfexportError


@click.command("deploy", context_settings={"ignore_unknown_options": True, "allow_extra_args": True})
def command() -> None:
    """Not built yet in this release: planned (see README, 'Status')."""
    raise BfexportError("bfexport deploy is not built yet in this release")
