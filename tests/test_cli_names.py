"""Names checked at parse time (before torch loads) with did-you-mean; help, lists and --print-config
generated from the registries; a sweep's grid checked before its first cell."""

from __future__ import annotations

import re
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from mmrebal.cli import app
from mmrebal.cli.describe import load
from mmrebal.engine.config import TRAIN_PRESETS, read_yaml
from mmrebal.names import KINDS, registered
from mmrebal.sweep import SweepError, build_spec, error_line

ROOT = Path(__file__).resolve().parents[1]


def _plain(text: str) -> str:
    return re.sub(r"\x1b\[[0-9;]*m|[│╭╮╰╯─]", " ", text)


@pytest.mark.parametrize("kind", list(KINDS))
def test_source_scan_finds_what_the_registry_holds(kind: str) -> None:
    assert list(registered(kind)) == sorted(load(kind))


@pytest.mark.parametrize(
    ("args", "hint"),
    [
        (["--sampler", "remx"], "did you mean 'remix'?"),
        (["--method", "ogm"], "did you mean 'ogm-ge'"),
        (["--fusion", "concatt"], "did you mean 'concat'?"),
        (["--encoders", "audio=cnn,visual=resnt18"], "did you mean 'resnet18'"),
        (["--preset", "ogmm"], "did you mean 'ogm'?"),
    ],
)
def test_unknown_names_fail_at_once_with_a_suggestion(args: list[str], hint: str, tmp_path: Path) -> None:
    started = time.perf_counter()
    result = CliRunner().invoke(app, ["train", *args, "--out", str(tmp_path / "run")])
    elapsed = time.perf_counter() - started
    assert result.exit_code == 1
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and hint in lines[0]
    assert "known: " in lines[0]
    assert elapsed < 1.0, f"the name check took {elapsed:.2f} s"
    assert not (tmp_path / "run").exists()


def test_a_misspelt_sampler_never_imports_torch(tmp_path: Path) -> None:
    """What keeps the parse-time check well under a second: torch (~2 s) is never imported."""
    code = (
        "import sys\nfrom mmrebal.cli import app\n"
        "try:\n    app(['train', '--sampler', 'remx'])\nexcept SystemExit as e:\n    code = e.code\n"
        "print('torch' in sys.modules, code)"
    )
    started = time.perf_counter()
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, check=True)
    wall = time.perf_counter() - started
    assert out.stdout.split() == ["False", "1"], out.stderr
    assert "did you mean 'remix'" in out.stderr
    print(f"python + parse + check: {wall:.2f} s wall")


def test_a_name_from_a_config_file_is_checked_too(tmp_path: Path) -> None:
    config = tmp_path / "c.yaml"
    config.write_text("sampler: dus-hh\n")
    result = CliRunner().invoke(app, ["train", "--config", str(config)])
    assert result.exit_code == 1 and "did you mean 'dus-h'" in result.output


def test_help_lists_every_registered_name_in_panels() -> None:
    text = _plain(CliRunner().invoke(app, ["train", "--help"], env={"COLUMNS": "250"}).output)
    for kind in KINDS:
        assert " | ".join(sorted(load(kind))) in text, kind
    assert " | ".join(TRAIN_PRESETS) in text
    for panel in ("What to train", "Optimisation", "Data and device", "Run", "Component options"):
        assert panel in text
    assert re.search(r"--epochs\s.*Training epochs\. \[default: 6\]", text)


@pytest.mark.parametrize("what", ["samplers", "methods", "fusions", "encoders"])
def test_list_prints_one_line_per_entry(what: str) -> None:
    result = CliRunner().invoke(app, ["list", what])
    assert result.exit_code == 0
    names = [line.split()[0] for line in result.output.splitlines() if not line.startswith("(")]
    assert names == sorted(load(what[:-1]))


def test_list_presets_and_unknown_list() -> None:
    result = CliRunner().invoke(app, ["list", "presets"])
    assert [ln.split()[0] for ln in result.output.splitlines()[:-1]] == list(TRAIN_PRESETS)
    assert "lr=5e-05" in result.output  # remix's reference learning rate
    bad = CliRunner().invoke(app, ["list", "smplers"])
    assert bad.exit_code == 2 and "did you mean 'samplers'?" in bad.output


def test_help_sampler_shows_options_types_defaults_and_paper() -> None:
    result = CliRunner().invoke(app, ["train", "--sampler", "remix", "--help-sampler"])
    assert result.exit_code == 0
    assert "Data Remixing" in result.output  # the paper
    assert re.search(r"warmup\s+int\s+\(default 10\)", result.output)
    assert re.search(r"tie\s+str\s+\(default 'last'\)", result.output)
    assert "num_samples" not in result.output  # the trainer's own arguments are not options
    method = CliRunner().invoke(app, ["train", "--method", "ogm-ge", "--help-method"])
    assert method.exit_code == 0 and "alpha" in method.output


def test_version_and_print_config_round_trip(tmp_path: Path) -> None:
    from mmrebal import __version__

    assert CliRunner().invoke(app, ["--version"]).output.strip() == f"mmrebal {__version__}"
    result = CliRunner().invoke(app, ["train", "--preset", "remix", "--epochs", "3", "--print-config"])
    assert result.exit_code == 0
    printed = tmp_path / "printed.yaml"
    printed.write_text(result.output)
    again = read_yaml(printed)
    assert again["epochs"] == 3 and again["lr"] == 5e-05
    assert yaml.safe_load(result.output)["preset"] == "remix"


def test_sweep_grid_is_checked_before_any_cell(tmp_path: Path) -> None:
    with pytest.raises(SweepError, match=r"--samplers 'remx': unknown sampler; did you mean 'remix'\?"):
        build_spec({}, None, "dus,remx", None, None, tmp_path / "sw", None, [])
    with pytest.raises(SweepError, match="did you mean 'mla'"):
        build_spec({"methods": ["joint", "mlaa"]}, None, "dus", None, None, tmp_path / "sw", None, [])
    result = CliRunner().invoke(app, ["sweep", "--samplers", "remx,dus", "--out", str(tmp_path / "sw")])
    assert result.exit_code == 2 and "did you mean 'remix'" in result.output
    assert not (tmp_path / "sw").exists()


def test_error_line_is_the_last_error_of_a_log(tmp_path: Path) -> None:
    log = tmp_path / "train.log"
    log.write_text("# start\nerror: first\nepoch 0/1\nerror: --sampler-opt 'x': unknown option\n")
    assert error_line(log) == "error: --sampler-opt 'x': unknown option"
    log.write_text("Traceback ...\n")
    assert error_line(log) is None
    assert error_line(tmp_path / "missing.log") is None


def test_the_sweeps_train_switches_are_the_train_commands_flags() -> None:
    import typer.main

    from mmrebal.sweep import train_switches

    command = typer.main.get_command(app).commands["train"]
    flags = {opt for param in command.params if getattr(param, "is_flag", False) for opt in param.opts}
    assert train_switches() == flags


@pytest.mark.parametrize("kind", ["sampler", "method"])
def test_every_option_the_help_lists_is_accepted(kind: str) -> None:
    from mmrebal.cli.describe import options, registry

    for name, factory in load(kind).items():
        listed = {option: default for option, _, default in options(factory, kind)}
        assert registry(kind).check(name, listed) == listed, name
