"""The ``mmrebal`` command line. Heavy imports (torch, torchvision, h5py) happen inside commands so
that ``mmrebal --help`` answers at once."""

from __future__ import annotations

import typer

from mmrebal.cli import prep, report, score, sweep, train

app = typer.Typer(
    name="mmrebal",
    help="Rebalanced multimodal learning from the data side: prep -> train -> score -> report.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
app.command("prep")(prep.prep_command)
app.command("train")(train.train_command)
app.command("score")(score.score_command)
app.command("report")(report.report_command)
app.command("sweep", context_settings={"allow_extra_args": True, "ignore_unknown_options": True})(
    sweep.sweep_command
)


def main() -> None:
    app()
