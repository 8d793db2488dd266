"""Several processes (torchrun, DDP) on the CPU with gloo: 2 processes at B/2 train as one
process at B (LN; BN with norm.sync=true; a loss summed over the cases; the losses that
communicate: skip-thoughts, order embeddings), BN without sync does not; every experiment's
task declares how its loss reduces (none is refused), and the declaration holds on a
synthetic batch split over 2 processes; rank 0 alone writes the run folder; resume under DDP,
and a resume with another world size refused in one line."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import typing
from pathlib import Path

import ddp_cases
import hydra
import pytest
import torch
import torch.multiprocessing as mp
from helpers import ROOT, TINY, load_script

from lnrepro import distributed
from lnrepro.data.common import TensorData
from lnrepro.data.ptb import TokenStreams
from lnrepro.distributed import World
from lnrepro.errors import ConfigError
from lnrepro.nn.norm import NormSpec

# float64 on both sides; what differs is the order of the sums (two halves, then the DDP
# average): the measured gaps are ~1e-15 (grads) and ~1e-15 (losses)
TOL = 1e-12
TORCHRUN = Path(sys.executable).parent / "torchrun"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def equivalence(tmp_path_factory):
    """Every case of ddp_cases in one process at B, and in 2 gloo processes at B/2."""
    torch.set_num_threads(1)
    ref = {case: ddp_cases.train(case) for case in ddp_cases.CASES}
    out = tmp_path_factory.mktemp("ddp") / "results.pt"
    mp.spawn(ddp_cases.worker, args=(2, _free_port(), str(out)), nprocs=2)
    got = torch.load(out)
    diffs = {}
    for case in ddp_cases.CASES:
        r, g = ref[case], got[case]
        diffs[case] = {
            "grad": max(float((r["grads"][k] - g["grads"][k]).abs().max()) for k in r["grads"]),
            "loss": max(abs(a - b) for a, b in zip(r["losses"], g["losses"], strict=True)),
            "buffers": max(
                [float((r["buffers"][k] - g["buffers"][k]).abs().max()) for k in r["buffers"]]
                or [0.0]
            ),
        }
        assert len(g["losses"]) == ddp_cases.STEPS
    print("\nDDP 2 x B/2 vs 1 x B (max abs diff):")
    for case, d in diffs.items():
        print(
            f"  {case:16s} grads {d['grad']:.2e}  losses {d['loss']:.2e}  "
            f"BN running stats {d['buffers']:.2e}"
        )
    return diffs


@pytest.mark.slow  # spawns 2 gloo processes (~15 s)
@pytest.mark.parametrize(
    "case",
    [
        "mlp_ln",
        "mlp_ln_sum",
        "mlp_bn_sync",
        "lstm_ln",
        "lstm_bn_sync",
        "skip_thoughts",
        "order_embeddings",
    ],
)
def test_two_processes_train_as_one(equivalence, case):
    """First-step gradients and 10 losses of 2 x B/2 equal 1 x B within TOL (float64, SGD):
    also for the losses that communicate (skip-thoughts' token mean, Kiros et al. 2015: the
    count all-reduced; order embeddings' ranking against the whole batch, Vendrov et al. 2016:
    the embeddings gathered with autograd)."""
    d = equivalence[case]
    assert d["grad"] < TOL and d["loss"] < TOL, d
    assert d["buffers"] < TOL, d  # synced BN: the same running averages too


@pytest.mark.slow  # the same 2 spawned processes
@pytest.mark.parametrize("case", ["mlp_bn", "lstm_bn"])
def test_bn_without_sync_normalises_each_process_alone(equivalence, case):
    d = equivalence[case]
    assert d["grad"] > 100 * TOL and d["loss"] > 100 * TOL, d


# ---------------------------------------------------------------- pieces, in one process
def test_shards_are_slices_of_the_one_process_batches():
    x = torch.arange(40.0).view(20, 2)
    y = torch.arange(20)
    data = TensorData({"train": (x, y)}, batch_size=4, seed=3)
    whole = list(data.train_batches(1))
    halves = [list(distributed.shard_data(data, World(r, 2)).train_batches(1)) for r in (0, 1)]
    for b, h0, h1 in zip(whole, *halves, strict=True):
        for t, a, c in zip(b, h0, h1, strict=True):
            assert torch.equal(torch.cat([a, c]), t) and len(a) == 2
    lm = TokenStreams(
        {s: torch.arange(4 * 13) for s in ("train", "val", "test")},
        [str(i) for i in range(52)],
        batch_size=4,
        bptt=3,
    )
    seg = next(lm.train_batches(0))
    part = next(distributed.shard_data(lm, World(1, 2)).train_batches(0))
    assert torch.equal(part.x, seg.x[:, 2:]) and torch.equal(part.y, seg.y[:, 2:])
    assert (
        part.first and lm.steps_per_epoch == distributed.shard_data(lm, World(1, 2)).steps_per_epoch
    )


def test_one_process_is_untouched():
    data, task, model = object(), object(), torch.nn.Linear(2, 2)
    one = World()
    assert distributed.shard_data(data, one) is data
    assert distributed.shard_task(task, one) is task
    assert distributed.wrap_model(model, one, torch.device("cpu")) is model
    assert distributed.bn_meta(NormSpec("bn"), 16, one) == {
        "world_size": 1,
        "bn_stats": "batch",
        "bn_batch": 16,
    }


def test_batch_must_split_evenly():
    with pytest.raises(ConfigError, match=r"data.batch_size=10 does not split evenly over 4 "):
        distributed.rank_batch(10, World(0, 4), NormSpec("ln"))
    assert distributed.rank_batch(12, World(0, 4), NormSpec("ln")) == 3
    with pytest.raises(ConfigError, match="norm.sync=true"):
        distributed.rank_batch(4, World(0, 4), NormSpec("bn"))
    assert distributed.rank_batch(4, World(0, 4), NormSpec("bn", sync=True)) == 1


def test_bn_statistics_are_named():
    w = World(0, 4)
    assert distributed.bn_meta(NormSpec("bn"), 128, w) == {
        "world_size": 4,
        "bn_stats": "per_process",
        "bn_batch": 32,
    }
    assert distributed.bn_meta(NormSpec("bn", sync=True), 128, w)["bn_stats"] == "synced"
    assert distributed.bn_meta(NormSpec("ln"), 128, w) == {"world_size": 4}


def test_norm_sync_key():
    assert NormSpec.from_cfg({"kind": "bn", "sync": True}).sync
    assert not NormSpec.from_cfg({"kind": "bn"}).sync
    with pytest.raises(ConfigError, match="norm.sync must be true or false"):
        NormSpec.from_cfg({"kind": "bn", "sync": "yes"})
    # unbiased: auto is decided on the global batch, whatever the world size
    assert not NormSpec.from_cfg({"kind": "bn", "unbiased": "auto"}, batch_size=64).unbiased


def test_unsupported_tasks_are_refused():
    class Ranking:
        pass

    with pytest.raises(ConfigError, match="torchrun: the training loss of Ranking is neither"):
        distributed.shard_task(Ranking(), World(0, 2))
    with pytest.raises(ConfigError, match="torchrun: object does not shard its batches"):
        distributed.shard_data(object(), World(0, 2))


EXPERIMENTS = sorted(p.stem for p in (ROOT / "configs" / "experiment").glob("*.yaml"))


@pytest.fixture(scope="module")
def gpu_check():
    return load_script("gpu_check")


@pytest.fixture(scope="module")
def shares_in_a_group(gpu_check, tmp_path_factory):
    """The experiments whose task's loss communicates (`loss_communicates`: a count or the
    embeddings of every process), each share's loss computed by its own process of a 2-process
    gloo group: {experiment: [share 0's loss, share 1's loss]}."""
    torch.set_num_threads(1)
    chosen = [
        e
        for e in EXPERIMENTS
        if getattr(
            hydra.utils.get_class(gpu_check.compose(e, "ln")[1].task._target_),
            "loss_communicates",
            False,
        )
    ]
    out = tmp_path_factory.mktemp("ddp_shares") / "shares.pt"
    args = (2, _free_port(), str(out), chosen)
    mp.spawn(ddp_cases.experiment_shares, args=args, nprocs=2)
    return torch.load(out)


# Experiments whose task's loss communicates: their check spawns a 2-process gloo group (~19 s),
# so it runs in the slow lane; the test below fails if a communicating task is missing here.
SPAWNED = {"order_embeddings", "order_embeddings_cpu", "skip_thoughts", "skip_thoughts_cpu"}


@pytest.mark.parametrize(
    "experiment",
    [pytest.param(e, marks=pytest.mark.slow) if e in SPAWNED else e for e in EXPERIMENTS],
)
def test_every_task_declares_how_its_loss_reduces(gpu_check, experiment, request):
    """Each experiment's task, as Hydra composes it (reduced widths, a synthetic batch of 4
    cases: gpu_check's `compose` and `build`), on a world of 2: its loss is a mean ("mean") or
    a sum ("sum") over the cases, accepted by `shard_task`, and the mean (sum) of its losses on
    the two shares, as the data module cuts them, is its loss on the whole batch. No task is
    refused. A task whose loss communicates (`loss_communicates`: skip-thoughts' global token
    count, order embeddings' gathered embeddings) computes each share in its own process of a
    real 2-process gloo group (`shares_in_a_group`); the others in this process. The
    declaration is on the class, so a renamed class keeps it."""
    torch.set_num_threads(1)
    cfg = gpu_check.compose(experiment, "ln")[1]
    model, task, _, batch, _ = gpu_check.build(cfg, "cpu")
    assert task.loss_reduction in distributed.REDUCTIONS, type(task).__name__
    assert isinstance(distributed.shard_task(task, World(0, 2)), distributed.ShardedTask)
    model.eval()
    whole = ddp_cases.synthetic_loss(task, model, batch)
    if getattr(task, "loss_communicates", False):
        assert experiment in SPAWNED, f"{experiment}'s loss communicates: list it in SPAWNED"
        shares = request.getfixturevalue("shares_in_a_group")[experiment]
    else:
        data_module = typing.get_type_hints(hydra.utils.get_object(cfg.data._target_))["return"]
        shard = data_module.shard  # the data module's own cut, called on its class
        shares = [ddp_cases.synthetic_loss(task, model, shard(batch, r, 2)) for r in range(2)]
    combined = sum(shares) / 2 if task.loss_reduction == "mean" else sum(shares)
    assert combined == pytest.approx(whole, rel=1e-5, abs=1e-6), (task.loss_reduction, shares)


def test_resume_checks_the_world_size():
    distributed.check_resume(None, World())  # a checkpoint from before DDP: one process
    distributed.check_resume(2, World(1, 2))
    with pytest.raises(
        ConfigError,
        match=r"trained by 2 processes and this run has 1 .*"
        r"torchrun --nproc_per_node=2",
    ):
        distributed.check_resume(2, World())


def test_other_ranks_keep_hydra_out_of_the_run_dir():
    env = {"RANK": "1", "WORLD_SIZE": "2", "LOCAL_RANK": "1"}
    args = distributed.hydra_args(["experiment=x"], env)
    assert args[0] == "experiment=x" and "hydra.output_subdir=null" in args
    assert any(a.startswith("hydra.run.dir=") for a in args)
    assert distributed.hydra_args(["a=1"], {"RANK": "0", "WORLD_SIZE": "2"}) == ["a=1"]
    assert distributed.hydra_args(["a=1"], {}) == ["a=1"]
    for rank in ("0", "1"):
        with pytest.raises(ConfigError, match="torchrun runs one job"):
            distributed.hydra_args(["-m", "norm=ln,bn"], {**env, "RANK": rank})


def test_checkpoints_from_before_norm_sync_resume():
    from lnrepro.resume import check_resumable

    before = {"norm": {"kind": "bn", "eps": 1e-5}}
    check_resumable(before, {"norm": {"kind": "bn", "eps": 1e-5, "sync": False}})
    with pytest.raises(ConfigError, match="norm.sync"):
        check_resumable(before, {"norm": {"kind": "bn", "eps": 1e-5, "sync": True}})


# ---------------------------------------------------------------- the real entrypoint
SMALL = [a for a in TINY if not a.startswith("trainer.epochs")] + [
    "trainer.epochs=null",
    "trainer.eval_every=4",
    "trainer.log_every=2",
    "trainer.ckpt_every=4",
]


def _launch(args, tmp_path, data_dir, nproc=2, timeout=900):
    env = {
        **os.environ,
        "LNREPRO_OUTPUTS": str(tmp_path / "outputs"),
        "LNREPRO_DATA": str(data_dir),
        "WANDB_MODE": "disabled",
        "OMP_NUM_THREADS": "1",
    }
    head = (
        [str(TORCHRUN), "--standalone", f"--nproc_per_node={nproc}"] if nproc else [sys.executable]
    )
    return subprocess.run(
        [*head, "-m", "lnrepro.train", *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def _rows(run: Path) -> list[dict]:
    return [
        {k: v for k, v in json.loads(line).items() if k != "time"}
        for line in (run / "metrics.jsonl").read_text().splitlines()
    ]


@pytest.mark.slow
def test_torchrun_end_to_end(tiny_mnist, tmp_path):
    """torchrun --nproc_per_node=2 on pi_mnist_cpu: one run folder, written by rank 0; the same
    numbers as one process (LN, float32: to rounding); a resume that continues bit for bit; a
    resume in one process refused with one line."""
    full, part = tmp_path / "full", tmp_path / "part"
    p = _launch(
        [*SMALL, "norm=ln", "trainer.max_steps=8", f"hydra.run.dir={full}"], tmp_path, tiny_mnist
    )
    assert p.returncode == 0, p.stderr[-3000:]
    one = _launch(
        [*SMALL, "norm=ln", "trainer.max_steps=8", f"hydra.run.dir={tmp_path / 'one'}"],
        tmp_path,
        tiny_mnist,
        nproc=0,
    )
    assert one.returncode == 0, one.stderr[-3000:]
    # rank 0 alone wrote, into the one folder named on the command line
    assert not (tmp_path / "outputs").exists()
    assert sorted(x.name for x in full.iterdir()) == [
        ".hydra",
        "checkpoints",
        "metrics.jsonl",
        "summary.json",
        "train.log",
    ]
    summary = json.loads((full / "summary.json").read_text())
    assert summary["status"] == "completed" and summary["world_size"] == 2
    assert p.stdout.count("eval step 8") == 1  # one rank logs
    ckpt = torch.load(full / "checkpoints" / "last.pt", weights_only=False)
    assert ckpt["world_size"] == 2 and len(ckpt["ranks"]) == 2
    assert not torch.equal(ckpt["ranks"][0]["rng"]["cpu"], ckpt["ranks"][1]["rng"]["cpu"])
    # 2 x 8 cases = 1 x 16 cases: the same curve up to float32 rounding
    a, b = _rows(full), _rows(tmp_path / "one")
    assert [r.keys() for r in a] == [r.keys() for r in b]
    for ra, rb in zip(a, b, strict=True):
        for k, v in rb.items():
            assert ra[k] == pytest.approx(v, rel=1e-4, abs=1e-6), (k, ra, rb)

    # a one-process checkpoint resumed by 2 processes: refused, rank 0 says why in one line
    refused = _launch(
        [
            *SMALL,
            "norm=ln",
            "trainer.max_steps=12",
            "resume=true",
            f"hydra.run.dir={tmp_path / 'one'}",
        ],
        tmp_path,
        tiny_mnist,
    )
    assert refused.returncode != 0
    lines = [x for x in refused.stderr.splitlines() if "cannot resume" in x]
    assert len(lines) == 1 and "trained by 1 process and this run has 2" in lines[0], (
        refused.stderr[-3000:]
    )

    # stopped at step 4, resumed to 8: the uninterrupted run's rows exactly
    p = _launch(
        [*SMALL, "norm=bn", "trainer.max_steps=4", f"hydra.run.dir={part}"], tmp_path, tiny_mnist
    )
    assert p.returncode == 0, p.stderr[-3000:]
    summary = json.loads((part / "summary.json").read_text())
    assert (summary["bn_stats"], summary["bn_batch"]) == ("per_process", 8)
    refused = _launch(
        [*SMALL, "norm=bn", "trainer.max_steps=8", "resume=true", f"hydra.run.dir={part}"],
        tmp_path,
        tiny_mnist,
        nproc=0,
    )
    assert refused.returncode == 2
    lines = [x for x in refused.stderr.splitlines() if "cannot resume" in x]
    assert len(lines) == 1 and "trained by 2 processes and this run has 1" in lines[0], (
        refused.stderr
    )
    p = _launch(
        [*SMALL, "norm=bn", "trainer.max_steps=8", "resume=true", f"hydra.run.dir={part}"],
        tmp_path,
        tiny_mnist,
    )
    assert p.returncode == 0, p.stderr[-3000:]
    bn_full = tmp_path / "bn_full"
    p = _launch(
        [*SMALL, "norm=bn", "trainer.max_steps=8", f"hydra.run.dir={bn_full}"], tmp_path, tiny_mnist
    )
    assert p.returncode == 0, p.stderr[-3000:]
    assert _rows(part) == _rows(bn_full)
