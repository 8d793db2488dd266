"""Sweeps and launchers through the real entrypoint on the tiny MNIST: configs/sweep/*.yaml grids
and Optuna, the parallel (joblib), local_submitit and slurm launcher configs, the pre-launch
check of every job's config, the W&B sweep file and the Makefile wiring."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest
import yaml
from helpers import ROOT, TINY
from omegaconf import OmegaConf

from lnrepro.runs import find_runs

FAST = [o for o in TINY if o != "threads=1"] + ["trainer.max_steps=3"]


def sweep_root(tmp_path: Path, name: str) -> Path:
    """The one <date>_<time> folder a sweep wrote under outputs/sweeps/<name>/."""
    dirs = list((tmp_path / "outputs" / "sweeps" / name).iterdir())
    assert len(dirs) == 1, dirs
    return dirs[0]


@pytest.mark.slow  # end to end: a subprocess or a whole training run
def test_sweep_config_runs_its_grid_one_job_after_another(cli, tmp_path):
    """sweep=pi_mnist_lr is a multirun by itself; command-line values replace its grid."""
    p = cli("sweep=pi_mnist_lr", *TINY, "optim.lr=1e-3,3e-3", "norm=ln", "seed=1")
    assert p.returncode == 0, p.stderr[-3000:]
    root = sweep_root(tmp_path, "pi_mnist_lr")
    runs = find_runs(root)
    assert sorted(r.get("optim.lr") for r in runs) == [1e-3, 3e-3]
    assert len({r.path for r in runs}) == 2 and all(r.path.parent == root for r in runs)
    for r in runs:
        assert r.status == "completed" and (r.path / "metrics.jsonl").stat().st_size > 0
        assert r.group == "pi_mnist_lr" and r.name == "pi_mnist_cpu"
        assert "sweep=" not in r.path.name and f"optim.lr={r.get('optim.lr')}" in r.path.name


@pytest.mark.slow
def test_parallel_launcher_one_dir_and_one_wandb_run_per_job(cli, tmp_path):
    """hydra/launcher=parallel (joblib, 2 workers): own run dir, metrics and offline W&B run
    per job, and loky's thread limit (cores // n_jobs) reaches torch (threads: null)."""
    sweep = tmp_path / "sweep"
    p = cli(
        *FAST,
        "logger=wandb",
        "norm=ln,none",
        "hydra/launcher=parallel",
        "hydra.launcher.n_jobs=2",
        f"hydra.sweep.dir={sweep}",
        multirun=True,
        env={"WANDB_MODE": "offline"},
    )
    assert p.returncode == 0, p.stderr[-3000:]
    runs = find_runs(sweep)
    assert sorted(r.get("norm.kind") for r in runs) == ["ln", "none"]
    ids = set()
    for r in runs:
        assert r.status == "completed" and r.rows
        assert r.summary["threads"] == max(1, os.cpu_count() // 2)
        files = list((r.path / "wandb").glob("offline-run-*/run-*.wandb"))
        assert len(files) == 1, r.path
        ids.add(files[0].stem)
    assert len(ids) == 2


@pytest.mark.slow
def test_local_submitit_launcher_runs_jobs_end_to_end(cli, tmp_path):
    sweep = tmp_path / "sweep"
    p = cli(
        *FAST, "norm=bn", "hydra/launcher=local_submitit", f"hydra.sweep.dir={sweep}", multirun=True
    )
    assert p.returncode == 0, p.stderr[-3000:]
    (run,) = find_runs(sweep)
    assert run.get("norm.kind") == "bn" and run.status == "completed"
    assert run.summary["threads"] == 1  # cpus_per_task=1 exported as OMP_NUM_THREADS by `setup`
    assert len(list((sweep / ".submitit").glob("*/*_result.pkl"))) == 1


def test_slurm_launcher_settings_reach_the_sbatch_script(tmp_path, monkeypatch):
    """Command-line hydra.launcher.* values end up as #SBATCH lines (built by submitit with a
    stand-in `srun` on PATH: no cluster here)."""
    import submitit
    from hydra import compose, initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra
    from hydra_plugins.hydra_submitit_launcher.config import BaseQueueConf

    (tmp_path / "srun").write_text("#!/bin/sh\n")
    (tmp_path / "srun").chmod(0o755)
    monkeypatch.setenv("PATH", f"{tmp_path}{os.pathsep}{os.environ['PATH']}")
    GlobalHydra.instance().clear()
    with initialize_config_dir(str(ROOT / "configs"), version_base="1.3"):
        cfg = compose(
            "train",
            [
                "experiment=pi_mnist_cpu",
                "hydra/launcher=slurm",
                "hydra.launcher.partition=gpu",
                "hydra.launcher.gpus_per_node=1",
                "hydra.launcher.timeout_min=90",
                "hydra.launcher.cpus_per_task=6",
                "hydra.launcher.mem_gb=24",
            ],
            return_hydra_config=True,
        )
    GlobalHydra.instance().clear()
    launcher = cfg.hydra.launcher
    assert launcher._target_.endswith("SlurmLauncher")
    skip = ("_target_", "submitit_folder", "name", "max_num_timeout")
    params = {
        k: OmegaConf.to_container(launcher[k], resolve=True)
        if OmegaConf.is_config(launcher[k])
        else launcher[k]
        for k in launcher
        if k not in skip
    }
    # as SlurmLauncher.launch passes them to submitit
    base = set(OmegaConf.structured(BaseQueueConf).keys())
    executor = submitit.AutoExecutor(cluster="slurm", folder=tmp_path / "submitit")
    executor.update_parameters(**{k if k in base else f"slurm_{k}": v for k, v in params.items()})
    script = executor._executor._make_submission_file_text("python -m x", "uid")
    for line in (
        "#SBATCH --partition=gpu",
        "#SBATCH --gpus-per-node=1",
        "#SBATCH --time=90",
        "#SBATCH --cpus-per-task=6",
        "#SBATCH --mem=24GB",
        "export OMP_NUM_THREADS=6",
    ):
        assert line in script, (line, script)


@pytest.mark.slow
def test_optuna_sweep_minimises_the_returned_best_validation_error(cli, tmp_path):
    p = cli("sweep=pi_mnist_optuna", *TINY, "hydra.sweeper.n_trials=2")
    assert p.returncode == 0, p.stderr[-3000:]
    root = sweep_root(tmp_path, "pi_mnist_optuna")
    result = yaml.safe_load((root / "optimization_results.yaml").read_text())
    runs = find_runs(root)
    assert len(runs) == 2 and len({r.get("optim.lr") for r in runs}) == 2
    best = min(runs, key=lambda r: r.summary["best"]["val/err"])
    assert result["best_value"] == best.summary["best"]["val/err"]
    assert result["best_params"]["optim.lr"] == pytest.approx(best.get("optim.lr"))


def _one_error_line(p) -> str:
    lines = [ln for ln in p.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1 and "Traceback" not in p.stderr, p.stderr[-2000:]
    return lines[0]


@pytest.mark.parametrize(
    "bad",
    [
        ["optim.lrr=1e-3,3e-3"],  # a typo in a swept key
        ["experiment=pi_mnist_cpu,lm_ptb_char_cpu", "norm=ln"],  # only the second job breaks
    ],
)
@pytest.mark.slow  # end to end: a subprocess or a whole training run
def test_sweep_over_an_unknown_key_stops_before_any_job(cli, tmp_path, bad):
    """One line naming the key, exit 2, and nothing written: even with the parallel launcher,
    which would otherwise have run the jobs that compose."""
    p = cli("sweep=pi_mnist_lr", *TINY, *bad, "seed=1", "optim.lr=1e-3", "hydra/launcher=parallel")
    assert p.returncode == 2, p.stderr[-2000:]
    line = _one_error_line(p)
    assert line.startswith("error: the sweep cannot run") and "no job was started" in line
    assert "optim.lrr" in line if "lrr" in bad[0] else "data.val_size" in line
    assert not (tmp_path / "outputs").exists()


@pytest.mark.slow  # end to end: a subprocess or a whole training run
def test_unknown_key_in_a_sweep_file_is_reported_the_same_way(cli, tmp_path):
    (tmp_path / "cfg" / "sweep").mkdir(parents=True)
    (tmp_path / "cfg" / "sweep" / "typo.yaml").write_text(
        "# @package _global_\nhydra:\n  mode: MULTIRUN\n  sweeper:\n    params:\n"
        "      optim.learning_rate: 1e-3,3e-3\n"
    )
    p = cli(*TINY, f"hydra.searchpath=[file://{tmp_path / 'cfg'}]", "sweep=typo")
    assert p.returncode == 2
    assert "optim.learning_rate" in _one_error_line(p)
    assert not (tmp_path / "outputs").exists()


def test_wandb_sweep_file_drives_the_entrypoint_with_valid_keys(compose):
    """Its command is the Hydra entrypoint with ${args_no_hyphens}; the command's fixed overrides
    plus every parameter at its first value compose (an unknown key would raise here)."""
    spec = yaml.safe_load((ROOT / "experiments" / "wandb" / "pi_mnist.yaml").read_text())
    cmd = spec["command"]
    assert cmd[cmd.index("-m") + 1] == "lnrepro.train" and cmd[-1] == "${args_no_hyphens}"
    fixed = [c for c in cmd if "=" in c and not c.startswith("${")]
    assert spec["metric"]["name"] in ("val/err", "val/nll") and spec["metric"]["goal"] == "minimize"
    for name, p in spec["parameters"].items():
        first = p["values"][0] if "values" in p else p.get("value", p.get("min"))
        cfg = compose(fixed + [f"{name}={first}"])
        assert str(OmegaConf.select(cfg, name if name != "norm" else "norm.kind")) == str(first)
    with pytest.raises(Exception, match="optim.lrr"):
        compose(fixed + ["optim.lrr=0.1"])


def test_make_wires_sweep_launcher_and_reproduce():
    def dry(*args):
        p = subprocess.run(
            ["make", "-n", *args],
            cwd=ROOT,
            capture_output=True,
            text=True,
            env={**os.environ, "MAKEFLAGS": ""},
            check=False,
        )
        return p.returncode, p.stdout + p.stderr

    rc, out = dry("sweep", "SWEEP=pi_mnist_lr", "LAUNCHER=parallel", "ARGS=norm=ln")
    assert rc == 0 and "-m lnrepro.train sweep=pi_mnist_lr hydra/launcher=parallel norm=ln" in out
    rc, out = dry("compare", "ARGS=--norm ln")
    assert rc == 0 and "scripts/compare_runs.py --norm ln" in out
    rc, out = dry("reproduce")
    assert rc == 0
    for spec in ("figure6_pi_mnist", "lm_ptb_char", "cnn_mnist"):
        assert f"scripts/figure.py run experiments/{spec}.yaml --scale cpu" in out, spec
    assert out.rindex("scripts/figure.py run") < out.rindex("for f in experiments/*.yaml")
