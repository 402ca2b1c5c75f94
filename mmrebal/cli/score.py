"""`mmrebal score` (being written)."""

import typer


def score_command(ctx: typer.Context) -> None:
    raise typer.Exit(1)
