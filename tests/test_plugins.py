"""A new sampler is one file: written outside the tree and named in MMREBAL_PLUGINS, the registry finds
it and the sampler contract tests (exact resume, DDP sharding, epoch length, a real training run) run
it, with no list edited anywhere."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

DOC = ROOT / "docs" / "architecture.md"


def plugin_file(tmp_path: Path) -> Path:
    """The one-file sampler of docs/architecture.md ("Add a sampler"), written outside the tree."""
    block = re.search(r"<!-- example-plugin.*?-->\n```python\n(.*?)```", DOC.read_text(), re.S)
    assert block is not None, "docs/architecture.md lost its sampler example"
    path = tmp_path / "alternate.py"
    path.write_text(block.group(1))
    return path


def _pytest(plugin: Path, *args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "MMREBAL_PLUGINS": str(plugin)}
    command = [sys.executable, "-m", "pytest", "-q", "-rA", "-p", "no:cacheprovider", *args]
    return subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)


def test_the_registry_finds_a_plugin_file(tmp_path: Path) -> None:
    plugin = plugin_file(tmp_path)
    code = (
        "from mmrebal.samplers import SAMPLERS, create_sampler; from mmrebal.names import registered\n"
        "s = create_sampler('alternate', num_samples=10, labels=[0] * 10, modalities=('a', 'b'),"
        " batch_size=4, epochs=1, every='3')\n"
        "print(type(s).name, s.every, 'alternate' in registered('sampler'), 'uniform' in SAMPLERS)"
    )
    env = {**os.environ, "MMREBAL_PLUGINS": str(plugin)}
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["alternate", "3", "True", "True"]  # name set, option coerced


def test_a_missing_plugin_file_is_one_line(tmp_path: Path) -> None:
    code = "from mmrebal.samplers import SAMPLERS; SAMPLERS.names()"
    env = {**os.environ, "MMREBAL_PLUGINS": str(tmp_path / "nope.py")}
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True)
    assert out.returncode != 0 and "MMREBAL_PLUGINS names" in out.stderr.splitlines()[-1]


@pytest.mark.slow
def test_a_one_file_sampler_runs_the_contract_tests(tmp_path: Path) -> None:
    plugin = plugin_file(tmp_path)
    tests = ("tests/test_samplers.py", "tests/test_sampler_train.py", "tests/test_display.py")
    result = _pytest(plugin, "-k", "alternate", *tests)
    assert result.returncode == 0, result.stdout[-3000:]
    passed = set(re.findall(r"^PASSED (\S+)", result.stdout, re.M))
    expected = {
        "tests/test_samplers.py::test_resume_is_exact[alternate-mods0]",
        "tests/test_samplers.py::test_resume_is_exact[alternate-mods1]",
        "tests/test_samplers.py::test_plans_shard_disjointly_for_ddp[alternate]",
        "tests/test_sampler_train.py::test_sampler_trains_and_traces[alternate-2]",
        "tests/test_sampler_train.py::test_sampler_trains_and_traces[alternate-3]",
        "tests/test_display.py::test_epoch_steps_is_the_number_of_plans[alternate]",
    }
    assert expected <= passed, result.stdout[-3000:]


@pytest.mark.slow
def test_the_command_line_trains_a_plugin_sampler_and_checks_its_options(tmp_path: Path) -> None:
    from _tiny_cache import build_tiny_cache

    cache = build_tiny_cache(tmp_path / "c.h5", n=36, num_classes=3, seed=1)
    env = {**os.environ, "MMREBAL_PLUGINS": str(plugin_file(tmp_path))}
    train = [sys.executable, "-m", "mmrebal", "train", "--sampler", "alternate", "--cache", str(cache)]
    train += ["--epochs", "2", "--batch-size", "6", "--feature-dim", "8", "--device", "cpu"]

    def run(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run([*train, *args], cwd=ROOT, env=env, capture_output=True, text=True)

    helped = run("--help-sampler")
    assert helped.returncode == 0 and "every" in helped.stdout and "default 2" in helped.stdout
    refused = run("--sampler-opt", "evry=3", "--out", str(tmp_path / "bad"))
    assert refused.returncode == 1
    assert refused.stderr.strip().splitlines() == [
        "error: sampler 'alternate' has no option 'evry' (did you mean 'every'?); its options: every"
    ]
    trained = run("--sampler-opt", "every=3", "--out", str(tmp_path / "run"))
    assert trained.returncode == 0, trained.stderr
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert summary["options"]["sampler"] == {"every": 3}
