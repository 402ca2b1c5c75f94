"""Checkpoints that are not what `mmrebal score`/`--resume` expect give one line each, and a pickle
payload never runs."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from _tiny_cache import build_tiny_cache
from typer.testing import CliRunner

from mmrebal.cli import app
from mmrebal.engine.checkpoint import load_checkpoint, save_checkpoint

torch.set_num_threads(1)
MARKER = Path("/nonexistent")  # replaced per test: the file a pickle payload would create


class Payload:
    """Unpickling this would create MARKER; weights_only loading must refuse it."""

    def __reduce__(self):  # noqa: ANN204
        return (Path.touch, (MARKER,))


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    base = tmp_path_factory.mktemp("ckpt")
    cache = build_tiny_cache(base / "tiny.h5", n=60, num_classes=3, seed=1)
    out = base / "run"
    args = ["train", "--cache", str(cache), "--out", str(out), "--epochs", "1", "--batch-size", "12",
            "--feature-dim", "16", "--device", "cpu"]  # fmt: skip
    assert CliRunner().invoke(app, args).exit_code == 0
    return out


def score_line(run: Path, checkpoint: Path) -> str:
    result = CliRunner().invoke(app, ["score", str(run), "--checkpoint", str(checkpoint), "--device", "cpu"])
    assert result.exit_code == 1 and "Traceback" not in result.output
    (line,) = [line for line in result.output.splitlines() if line.strip()]
    assert line.startswith("error: ")
    return line


def test_a_pickle_payload_is_refused_in_one_line_and_never_runs(run: Path, tmp_path: Path) -> None:
    global MARKER
    MARKER = tmp_path / "payload-ran"
    evil = tmp_path / "evil.pt"
    torch.save({"config": {}, "model": Payload()}, evil)
    line = score_line(run, evil)
    assert "not loaded (loading it could run code)" in line and "weights_only" not in line
    assert not MARKER.exists()


def test_a_plain_state_dict_and_a_truncated_file_are_named(run: Path, tmp_path: Path) -> None:
    plain = tmp_path / "plain.pt"
    torch.save(load_checkpoint(run / "checkpoints" / "best.pt")["model"], plain)
    assert "not a checkpoint of `mmrebal train` (no config, model, method, run:" in score_line(run, plain)
    torn = tmp_path / "torn.pt"
    whole = (run / "checkpoints" / "best.pt").read_bytes()
    torn.write_bytes(whole[: len(whole) // 2])
    assert "not a readable checkpoint" in score_line(run, torn)


def test_a_checkpoint_with_an_unknown_option_is_one_line(run: Path, tmp_path: Path) -> None:
    state = load_checkpoint(run / "checkpoints" / "best.pt")
    state["config"]["colour"] = "red"
    odd = tmp_path / "odd.pt"
    save_checkpoint(odd, state)
    assert "its config has option(s) colour that this mmrebal does not know" in score_line(run, odd)
