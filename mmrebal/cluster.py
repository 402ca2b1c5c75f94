"""`mmrebal sweep --cluster slurm`: every unfinished cell of a sweep as one job of a submitit executor.

A cell's job runs the command a local sweep would (:meth:`SweepRunner.launch`: resumed from
``checkpoints/last.pt`` when there is one, output appended to ``<cell>/train.log``), so a cluster
sweep and a local one write the same directory and can continue each other. The cluster gives each
job its GPU (``gpus_per_node: 1`` by default); the submitting command waits for the jobs, reports
each as it ends, and on Ctrl-C or SIGTERM cancels the ones still queued or running (their
checkpoints let the next submission resume them). ``cluster="local"`` runs the jobs as local
processes through submitit's ``LocalExecutor``, which is how the tests exercise this module.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from mmrebal.sweep import DEFAULT_LAUNCHER, Cell, CellOutcome, SweepRunner, SweepSpec, skip_finished

CLUSTERS = ("slurm", "local")
# submitit's executor-independent parameters; --cluster-opt overrides them and adds slurm_* ones
DEFAULT_PARAMETERS: dict[str, Any] = {
    "nodes": 1, "tasks_per_node": 1, "gpus_per_node": 1, "cpus_per_task": 8, "timeout_min": 24 * 60,
}  # fmt: skip
POLL_S = 5.0


def run_cell(spec: SweepSpec, cell: Cell, launcher: Sequence[str]) -> CellOutcome:
    """A job's body: one cell, as a local sweep trains it, on the devices the cluster gave the job."""
    return SweepRunner(spec, launcher).launch(cell, None)


class ClusterSweep:
    """Submits a spec's unfinished cells as one batch of jobs and waits for them (``run``/``stop``)."""

    def __init__(
        self,
        spec: SweepSpec,
        cluster: str,
        parameters: dict[str, Any] | None = None,
        folder: Path | None = None,
        launcher: Sequence[str] = DEFAULT_LAUNCHER,
        poll_s: float = POLL_S,
    ) -> None:
        if cluster not in CLUSTERS:
            raise ValueError(f"--cluster {cluster!r}: choose one of {', '.join(CLUSTERS)}")
        # one cell per job: the sweep's own concurrency and GPU list do not apply inside a job
        self.spec = dataclasses.replace(spec, jobs=1, gpus=[])
        self.cluster = cluster
        self.parameters = {**DEFAULT_PARAMETERS, **(parameters or {})}
        self.folder = folder or spec.out / ".submitit"
        self.launcher = tuple(launcher)
        self.poll_s = poll_s
        self.jobs: dict[Cell, Any] = {}

    def run(self, on_outcome: Callable[[CellOutcome], None] = lambda o: None) -> list[CellOutcome]:
        """Every cell's outcome, in grid order; ``on_outcome`` sees each as it happens."""
        import submitit

        cells = self.spec.cells()
        outcomes, todo = skip_finished(self.spec, on_outcome)
        executor = submitit.AutoExecutor(folder=self.folder, cluster=self.cluster)
        executor.update_parameters(name=f"mmrebal-{self.spec.out.name}", **self.parameters)
        try:
            with executor.batch():
                pending = {cell: executor.submit(run_cell, self.spec, cell, self.launcher) for cell in todo}
            self.jobs = dict(pending)
            while pending:
                for cell in [c for c, job in pending.items() if job.done()]:
                    outcomes[cell] = self._outcome(cell, pending.pop(cell))
                    on_outcome(outcomes[cell])
                if pending:
                    time.sleep(self.poll_s)
        except BaseException:
            self.stop()
            raise
        return [outcomes[c] for c in cells]

    def _outcome(self, cell: Cell, job: Any) -> CellOutcome:
        """The job's own outcome, or ``failed`` with the job's log when the job itself broke."""
        try:
            return job.result()
        except Exception:  # a job killed, timed out or unable to start is one failed cell
            return CellOutcome(cell, "failed", log=Path(job.paths.stderr))

    def running(self) -> list[Cell]:
        """The cells whose job has not finished (queued or running)."""
        return [cell for cell, job in self.jobs.items() if not job.done()]

    def stop(self) -> None:
        """Cancel the jobs that have not finished (their checkpoints let the next run resume them)."""
        for job in self.jobs.values():
            if not job.done():
                job.cancel(check=False)
