"""A scorecard's runs are ordinary training runs: Hydra multiruns of `python -m lnrepro.train`
with resume=true, 2 at a time through the `parallel` launcher on a machine of 2 cores or more,
into outputs/scorecards/<name>/<figure>/<setting>/<norm>_s<seed>/, in the W&B group
`scorecard/<name>` (logger.group), so that `make compare ARGS="--group scorecard/<name>"`
and the W&B project show them beside every other run. A run that already finished (completed
or diverged) is not launched again; a killed one continues from its checkpoint."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from lnrepro import REPO_ROOT
from lnrepro.runs import Run, load_run, outputs_root
from lnrepro.scorecard.baselines import FINISHED, run_overrides
from lnrepro.scorecard.suite import Entry

SUBDIR = "${norm.kind}_s${seed}"  # a job's folder, resolved per job (the class's short name)


def default_launcher() -> str | None:
    """`parallel` (2 lanes, configs/hydra/launcher/parallel.yaml) with 2 cores or more, else
    Hydra's basic launcher (one job after another)."""
    return "parallel" if (os.cpu_count() or 1) >= 2 else None


def entry_dir(name: str, entry: Entry) -> Path:
    """outputs/scorecards/<name>/<figure>/<setting>/ (LNREPRO_OUTPUTS moves outputs/)."""
    return outputs_root() / "scorecards" / name / entry.slug


def job_dir(root: Path, kind: str, seed: int) -> Path:
    return Path(root) / f"{kind}_s{seed}"


def load(root: Path, kind: str, seed: int) -> Run | None:
    """The run of a norm (short name) and seed under an entry's folder, None if it never
    started."""
    path = job_dir(root, kind, seed)
    return load_run(path) if (path / "metrics.jsonl").exists() else None


def status(run: Run | None) -> str:
    """completed, diverged, interrupted, incomplete (no summary.json), or not run."""
    return "not run" if run is None else run.status


def pending(root: Path, kind: str, seeds: list[int]) -> list[int]:
    """The seeds of a norm whose run has not finished (completed or diverged)."""
    return [s for s in seeds if status(load(root, kind, s)) not in FINISHED]


def command(
    entry: Entry,
    norm_args: list[str],
    seeds: list[int],
    root: Path,
    group: str,
    launcher: str | None,
    extra: list[str] = (),
) -> list[str]:
    """The multirun of `entry` for the norms of `norm_args` (`norm=ln,bn` sweeps them) and
    `seeds`, exactly the figure's CPU-scale experiment and overrides at the entry's setting."""
    cmd = [sys.executable, "-m", "lnrepro.train", "-m", *run_overrides(entry, norm_args)]
    cmd += [
        "seed=" + ",".join(str(s) for s in seeds),
        f"hydra.sweep.dir='{root}'",  # quoted: a setting's folder holds = and ,
        f"hydra.sweep.subdir={SUBDIR}",
        f"++logger.group={group}",
    ]
    if launcher:
        cmd.append(f"hydra/launcher={launcher}")
    return cmd + list(extra)


def launch(cmd: list[str]) -> int:
    """Runs one multirun in the repository root, its output on this terminal; its exit code
    (non-zero when a job failed or diverged: the scorecard reads each run's status instead)."""
    print("+", " ".join(cmd), flush=True)
    return subprocess.run(cmd, cwd=REPO_ROOT, check=False).returncode
