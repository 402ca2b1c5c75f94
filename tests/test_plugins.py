"""A new sampler is one file: written outside the tree and named in MMREBAL_PLUGINS, the registry finds
it and the sampler contract tests (exact resume, DDP sharding, a real training run) run it, with no
list edited anywhere."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

TOY = '''
"""A toy sampler: shuffled batches; every other step one modality (in turn) sits out, unfused."""

from mmrebal.samplers import SAMPLERS
from mmrebal.samplers.base import Group, Plan, Sampler, SamplerSetup


@SAMPLERS.register("toy-alternate")
class Alternate(Sampler):
    def __init__(self, setup: SamplerSetup, *, every: int = 2) -> None:
        super().__init__(setup)
        self.every = every

    def plans(self, epoch):
        order = self.rng.permutation(self.num_samples)
        for k, start in enumerate(range(0, self.num_samples, self.batch_size)):
            rows = order[start : start + self.batch_size]
            if k % self.every:
                out = self.modalities[k % len(self.modalities)]
                yield Plan([Group(rows, tuple(m for m in self.modalities if m != out), fused=False)])
            else:
                yield Plan([Group(rows, self.modalities)])
'''


def _pytest(plugin: Path, *args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "MMREBAL_PLUGINS": str(plugin)}
    command = [sys.executable, "-m", "pytest", "-q", "-rA", "-p", "no:cacheprovider", *args]
    return subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)


def test_the_registry_finds_a_plugin_file(tmp_path: Path) -> None:
    plugin = tmp_path / "toy_sampler.py"
    plugin.write_text(TOY)
    code = (
        "from mmrebal.samplers import SAMPLERS, create_sampler; from mmrebal.names import registered\n"
        "s = create_sampler('toy-alternate', num_samples=10, labels=[0] * 10, modalities=('a', 'b'),"
        " batch_size=4, epochs=1, every='3')\n"
        "print(type(s).name, s.every, 'toy-alternate' in registered('sampler'), 'uniform' in SAMPLERS)"
    )
    env = {**os.environ, "MMREBAL_PLUGINS": str(plugin)}
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["toy-alternate", "3", "True", "True"]  # name set, option coerced


def test_a_missing_plugin_file_is_one_line(tmp_path: Path) -> None:
    code = "from mmrebal.samplers import SAMPLERS; SAMPLERS.names()"
    env = {**os.environ, "MMREBAL_PLUGINS": str(tmp_path / "nope.py")}
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True)
    assert out.returncode != 0 and "MMREBAL_PLUGINS names" in out.stderr.splitlines()[-1]


@pytest.mark.slow
def test_a_one_file_sampler_runs_the_contract_tests(tmp_path: Path) -> None:
    plugin = tmp_path / "toy_sampler.py"
    plugin.write_text(TOY)
    result = _pytest(plugin, "-k", "toy", "tests/test_samplers.py", "tests/test_sampler_train.py")
    assert result.returncode == 0, result.stdout[-3000:]
    passed = set(re.findall(r"^PASSED (\S+)", result.stdout, re.M))
    expected = {
        "tests/test_samplers.py::test_resume_is_exact[toy-alternate-mods0]",
        "tests/test_samplers.py::test_resume_is_exact[toy-alternate-mods1]",
        "tests/test_samplers.py::test_plans_shard_disjointly_for_ddp[toy-alternate]",
        "tests/test_sampler_train.py::test_sampler_trains_and_traces[toy-alternate-2]",
        "tests/test_sampler_train.py::test_sampler_trains_and_traces[toy-alternate-3]",
    }
    assert expected <= passed, result.stdout[-3000:]
