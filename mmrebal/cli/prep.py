"""`mmrebal prep` (being written)."""

import typer


def prep_command(ctx: typer.Context) -> None:
    raise typer.Exit(1)
