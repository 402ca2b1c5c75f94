"""The ``mmrebal`` command line. Heavy imports (torch, torchvision, h5py) happen inside commands so
that ``mmrebal --help`` answers at once."""

from __future__ import annotations

import typer

from mmrebal import __version__
from mmrebal.cli import demo, describe, prep, report, score, sweep, train

app = typer.Typer(
    name="mmrebal",
    help="Rebalanced multimodal learning from the data side: prep -> train -> score -> report.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


def _version(value: bool) -> None:
    if value:
        typer.echo(f"mmrebal {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: bool = typer.Option(
        False, "--version", callback=_version, is_eager=True, help="Print the version and exit."
    ),
) -> None:
    """Rebalanced multimodal learning from the data side: prep -> train -> score -> report."""


app.command("list")(describe.list_command)
app.command("demo")(demo.demo_command)
app.command("prep")(prep.prep_command)
app.command("train")(train.train_command)
app.command("score")(score.score_command)
app.command("report")(report.report_command)
app.command("sweep", context_settings={"allow_extra_args": True, "ignore_unknown_options": True})(
    sweep.sweep_command
)


def main() -> None:
    app()
