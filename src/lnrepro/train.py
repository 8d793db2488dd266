"""The one entrypoint: compose (Hydra), check, build data, model (with its norm), task and
optimizer once, fit with the one training loop, report.

    python -m lnrepro.train experiment=pi_mnist_cpu norm=ln|bn|none [key=value ...]
    python -m lnrepro.train -m experiment=pi_mnist_cpu norm=ln,bn,none data.batch_size=128,4
    python -m lnrepro.train resume=true hydra.run.dir=<run dir>   # its own overrides + these
    torchrun --nproc_per_node=2 -m lnrepro.train experiment=pi_mnist_cpu   # DDP: distributed.py

The pieces: lnrepro.build (checks and parts), lnrepro.resume (continuing a checkpoint),
lnrepro.distributed (several processes), lnrepro.cli (errors and exit codes around Hydra).
"""

from __future__ import annotations

import logging
from functools import partial
from pathlib import Path

import hydra
import torch
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig, OmegaConf

from lnrepro import cli as command_line
from lnrepro import distributed, resume
from lnrepro.build import build_norm, build_optimizer, build_parts, check_config, resolve_device
from lnrepro.callbacks import check_run_keys, check_writable, lock_run_dir, unlock_run_dir
from lnrepro.data.verify import pop_notes
from lnrepro.runlog import NullLogger, RunLogger, git_commit
from lnrepro.trainer import DistributedTrainer, Trainer, TrainerConfig

log = logging.getLogger("lnrepro")


def run(cfg: DictConfig, run_dir: str | Path) -> dict:
    """Train one configured run in `run_dir`, which is locked for it (a second run into it
    stops with one line); returns the summary (as in summary.json)."""
    check_run_keys(cfg)
    run_dir = Path(run_dir)
    is_main = distributed.current().is_main  # under torchrun rank 0 alone writes the run dir
    if is_main:
        check_writable(run_dir)
    took = lock_run_dir(run_dir) if is_main else False
    try:
        return _run(cfg, run_dir)
    finally:
        if took:
            unlock_run_dir(run_dir)


def _run(cfg: DictConfig, run_dir: Path) -> dict:
    config = check_config(cfg)
    if cfg.threads is not None:
        torch.set_num_threads(cfg.threads)
    # Subnormal floats (below 1.2e-38) run ~20x slower on x86 CPUs: Adam's running averages of
    # dead ReLU units decay into them (46-84 % of exp_avg in the first two pi-MNIST layers after
    # a batch-4 run, one Adam step 34 ms instead of 1.6 ms); flushed to zero, they change no
    # float32 weight (an update of 1e-38 / (sqrt(v) + 1e-8) is far below a weight's ulp).
    torch.set_flush_denormal(True)
    world = distributed.current()
    device = distributed.device_for(resolve_device(str(cfg.device)), world)
    batch_size = cfg.data.get("batch_size")  # the global batch, split over the processes
    norm = build_norm(cfg, batch_size, world)
    trainer_cfg = TrainerConfig(**OmegaConf.to_container(cfg.trainer, resolve=True))
    ckpt = resume.checkpoint_to_resume(cfg, run_dir, config, world)

    pop_notes()  # (what an earlier run in this process read is not this run's)
    task, data, model = distributed.wrap(*build_parts(cfg, norm, device), world, device, cfg.seed)
    optimizer, scheduler, interval = build_optimizer(cfg.optim, model)
    meta = {
        "seed": cfg.seed,
        "git_commit": git_commit(),
        "experiment": cfg.name,
        "norm": norm.kind,
        "batch_size": batch_size,
        "n_params": sum(p.numel() for p in model.parameters()),
        "threads": torch.get_num_threads(),  # results are bit-exact per thread count
        **distributed.bn_meta(norm, batch_size, world),  # world size, BN statistics
        "data_notes": pop_notes(),  # files read that are not the originals (data.verify)
    }
    logger = _logger(cfg, run_dir, config, meta, ckpt, task, world)
    make = Trainer if not world.active else partial(DistributedTrainer, world=world)
    trainer = make(model, task, data, optimizer, trainer_cfg, logger, run_dir,
                   checkpoint_extra={"config": config, "meta": meta}, scheduler=scheduler,
                   scheduler_interval=interval)  # fmt: skip
    exit_code = 1
    try:
        if ckpt:
            resume.load_into(trainer, ckpt)
        log.info(
            "%s | norm=%s batch=%s seed=%s | %d params | %d steps (%d per epoch) | %s",
            cfg.name, norm.kind, batch_size, cfg.seed, meta["n_params"], trainer.total_steps,
            data.steps_per_epoch, run_dir,
        )  # fmt: skip
        summary = trainer.fit()
        logger.write_summary(summary)
        exit_code = 0
        return summary
    finally:
        logger.close(exit_code)


def _logger(cfg: DictConfig, run_dir: Path, config: dict, meta: dict, ckpt, task, world):
    """metrics.jsonl + W&B on the main process; nothing on the others."""
    if not world.is_main:
        return NullLogger()
    logger_cfg = OmegaConf.to_container(cfg.logger, resolve=True)
    job_type, overrides = command_line.job_identity()
    logger_cfg["job_type"] = logger_cfg.get("job_type") or job_type
    return RunLogger(run_dir, config, logger_cfg, {**meta, "overrides": overrides},
                     resume_step=ckpt["step"] if ckpt else None,
                     higher_is_better=task.higher_is_better)  # fmt: skip


# absolute, so that the `lnrepro-train` console script finds it too (Hydra resolves a relative
# path against the module, pkg://configs, when the app is not run as __main__)
CONFIG_DIR = str(Path(__file__).resolve().parents[2] / "configs")


@hydra.main(version_base="1.3", config_path=CONFIG_DIR, config_name="train")
def main(cfg: DictConfig):
    return command_line.one_job(partial(_job, cfg))


def _job(cfg: DictConfig):
    with distributed.process_group(str(cfg.get("device", "auto"))):  # torchrun: DDP
        summary = run(cfg, distributed.run_dir(HydraConfig.get().runtime.output_dir))
    key = cfg.get("optimized_metric")  # e.g. best.val/err: returned to the sweeper (Optuna)
    return command_line.objective(summary, key) if key else None


def cli() -> None:
    """`python -m lnrepro.train` and `lnrepro-train`: Hydra's entrypoint, one-line errors."""
    command_line.entrypoint(main)


if __name__ == "__main__":
    cli()
