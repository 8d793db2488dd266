"""Inputs users got wrong, or files that went wrong: each is one clear line and a non-zero exit,
or it works and loses nothing. compare_runs over a NaN metric, empty or garbled metrics.jsonl
files and its default plot folder; resume with the run's own overrides, a refused resume that
names every differing key and the overrides that match; a string where a number is wanted;
the hint for a key a norm does not have."""

from __future__ import annotations

import json
import math
import shlex
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml
from helpers import ROOT, TINY, load_script, metrics_rows, tiny_cfg
from omegaconf import OmegaConf
from test_compare import rows_of, write_run

from lnrepro.errors import ConfigError, one_line
from lnrepro.runs import find_runs, mean_std

compare = load_script("compare_runs")


# ---- compare_runs: NaN metrics --------------------------------------------------------------
def _set_summary(run: Path, **final):
    summary = json.loads((run / "summary.json").read_text())
    summary["final"].update(final)
    (run / "summary.json").write_text(json.dumps(summary))  # NaN, as json.dumps writes it


def test_mean_std_of_values_with_a_nan_is_nan():
    m, s = mean_std([0.1, float("nan"), 0.3])
    assert math.isnan(m) and math.isnan(s)
    m, s = mean_std([float("nan")])
    assert math.isnan(m) and s is None
    m, s = mean_std([0.1, float("inf")])
    assert m == math.inf and math.isnan(s)


def test_compare_shows_a_nan_final_metric_as_nan(tmp_path, capsys):
    root = tmp_path / "outputs"
    for seed in (1, 2, 3):  # one setup over three seeds: one mean over a NaN
        write_run(root / f"ln_s{seed}", seed=seed, val_errs=(0.5, 0.1 * seed))
    _set_summary(root / "ln_s2", **{"val/err": float("nan")})
    write_run(root / "bn_s1", norm="bn", val_errs=(0.3, 0.2))  # one run: its own NaN
    _set_summary(root / "bn_s1", **{"test/err": float("nan")})
    assert compare.main([str(root)]) == 0
    out = capsys.readouterr().out
    rows = {r[1]: r for r in rows_of(out)}
    # experiment norm runs seeds status steps wall | final val/err, best val/err, final test/err
    assert rows["ln"][7] == "nan" and rows["ln"][8] == "0.2 ± 0.1", rows["ln"]
    assert rows["ln"][9] == "0.21 ± 0.1", rows["ln"]
    assert rows["bn"][9] == "nan" and rows["bn"][7] == "0.2", rows["bn"]


# ---- compare_runs: empty and garbled metrics.jsonl ------------------------------------------
def test_compare_warns_about_an_empty_metrics_file_and_a_garbage_line(tmp_path, capsys):
    root = tmp_path / "outputs"
    empty = write_run(root / "empty", seed=1, val_errs=(0.5, 0.3))
    (empty / "metrics.jsonl").write_text("")
    garbled = write_run(root / "garbled", seed=2, val_errs=(0.5, 0.4, 0.3, 0.2), complete=False)
    lines = (garbled / "metrics.jsonl").read_text().splitlines(keepends=True)
    lines[1] = "this is no json\n"  # line 2
    lines.insert(3, "[1, 2]\n")  # line 4: JSON, but not a row
    (garbled / "metrics.jsonl").write_text("".join(lines))
    write_run(root / "killed", seed=3, val_errs=(0.5,), complete=False, cut=True)

    runs = {r.path.name: r for r in find_runs(root)}
    err = capsys.readouterr().err
    warnings = [ln for ln in err.splitlines() if ln.strip()]
    assert len(warnings) == 3, err
    assert any(f"{empty / 'metrics.jsonl'}" in w and "empty" in w for w in warnings), err
    assert any(f"{garbled / 'metrics.jsonl'}:2:" in w for w in warnings), err
    assert any(f"{garbled / 'metrics.jsonl'}:4:" in w for w in warnings), err
    assert "killed" not in err  # the line a kill cut: the run is shown as incomplete anyway
    # the rest still loads: rows 1, 3 and 5 of the garbled file, the empty run's summary
    assert [r["val/err"] for r in runs["garbled"].rows] == [0.5, 0.3, 0.2]
    assert runs["garbled"].metric("val/err") == 0.2 and runs["garbled"].steps == 200
    assert runs["empty"].metric("val/err") == 0.3 and runs["empty"].status == "completed"
    assert compare.main([str(root)]) == 0


def test_compare_warns_about_an_unreadable_summary(tmp_path, capsys):
    run = write_run(tmp_path / "outputs" / "r", val_errs=(0.5, 0.3))
    (run / "summary.json").write_text("[1, 2]")
    (r,) = find_runs(tmp_path / "outputs")
    assert r.status == "incomplete" and r.metric("val/err") == 0.3
    assert f"{run / 'summary.json'}" in capsys.readouterr().err


# ---- compare_runs --plot without --out ------------------------------------------------------
@pytest.mark.slow  # > 1 s: a matplotlib figure
def test_compare_plot_without_out_goes_to_the_outputs_folder(tmp_path, monkeypatch, capsys):
    root = tmp_path / "runs"
    write_run(root / "ln_s1", val_errs=(0.5, 0.3))
    outputs, cwd = tmp_path / "outputs", tmp_path / "cwd"
    cwd.mkdir()
    monkeypatch.setenv("LNREPRO_OUTPUTS", str(outputs))
    monkeypatch.chdir(cwd)
    assert compare.main([str(root), "--plot", "val/err"]) == 0
    (png,) = (outputs / "compare").glob("*.png")
    assert "val_err" in png.name and png.read_bytes()[:4] == b"\x89PNG"
    assert f"wrote {png}" in capsys.readouterr().out
    assert not list(cwd.iterdir()) and not list(ROOT.glob("compare_*.png"))


# ---- resume: what differs, and the overrides that match --------------------------------------
def _fixes(message: str) -> list[str]:
    """The overrides a refused resume says to add."""
    way = message.split(" To continue the checkpoint add ")[1].split(", or start a new run")[0]
    return shlex.split(way.split(" (or ")[0])


def test_a_refused_resume_lists_every_key_and_the_way_on():
    from lnrepro.resume import check_resumable

    saved = {"seed": 1, "optim": {"lr": 1e-3, "betas": [0.9, 0.999]}, "model": {"hidden": [8, 8]}}
    saved["data"] = {f"k{i}": i for i in range(6)}
    now = {
        "seed": 3,
        "new_flag": False,  # a key the code gained since the checkpoint
        "optim": {"lr": 0.01, "betas": [0.9, 0.99]},
        "model": {"hidden": [8, 8]},
        "data": {f"k{i}": i + 1 for i in range(6)},
        "logger": {"project": "other"},  # may change: not listed
    }
    with pytest.raises(ConfigError) as e:
        check_resumable(saved, now)
    msg = str(e.value)
    assert "\n" not in msg
    assert "10 keys" in msg, msg
    for part in (
        "new_flag: (absent) -> False",
        "optim.lr: 0.001 -> 0.01",
        "optim.betas: [0.9, 0.999] -> [0.9, 0.99]",
        "seed: 1 -> 3",
        *(f"data.k{i}: {i} -> {i + 1}" for i in range(6)),
    ):
        assert part in msg, (part, msg)
    assert "logger" not in msg and "model.hidden" not in msg
    assert set(_fixes(msg)) == {
        "new_flag=null",
        "optim.lr=0.001",
        "optim.betas=[0.9,0.999]",
        "seed=1",
        *(f"data.k{i}={i}" for i in range(6)),
    }, msg
    assert "hydra.run.dir" in msg  # or start a new run


def test_a_key_the_code_dropped_is_added_back_with_plus():
    from lnrepro.resume import check_resumable

    with pytest.raises(ConfigError, match=r"old_key: 4 -> \(absent\).* \+old_key=4"):
        check_resumable({"seed": 1, "old_key": 4}, {"seed": 1})


@pytest.mark.parametrize(
    "value",
    [None, True, 3, 1e-5, 0.001, -2.5, float("inf"), "adam", "relu", "a b", "it's", "true",
     "1.5", "null", "x=y,z", [1, 2], [0.9, 0.999], ["a", "b c"], {"a": 1, "b": [2, "x"]}, []],
)  # fmt: skip
def test_the_suggested_override_parses_back_to_the_checkpoint_value(value):
    from hydra.core.override_parser.overrides_parser import OverridesParser

    from lnrepro.resume import hydra_override

    text = hydra_override("a.b", value)
    (parsed,) = OverridesParser.create().parse_overrides([text])
    assert parsed.key_or_group == "a.b"
    assert parsed.value() == value, text


@pytest.mark.slow  # composes configs (~0.5 s each)
def test_the_suggested_overrides_make_the_config_resumable(compose, tiny_mnist):
    from lnrepro.resume import check_resumable

    saved = OmegaConf.to_container(tiny_cfg(compose, tiny_mnist), resolve=True)
    del saved["trainer"]["eval_at_start"]  # as if the code had gained trainer.eval_at_start
    saved["optim"]["betas"] = [0.8, 0.9]
    now = tiny_cfg(compose, tiny_mnist, "model.hidden=[16,16]", "norm=bn", "optim.lr=0.5")
    with pytest.raises(ConfigError) as e:
        check_resumable(saved, OmegaConf.to_container(now, resolve=True))
    fix = _fixes(str(e.value))
    fixed = tiny_cfg(compose, tiny_mnist, "model.hidden=[16,16]", "norm=bn", "optim.lr=0.5", *fix)
    check_resumable(saved, OmegaConf.to_container(fixed, resolve=True))


def test_threads_and_keys_are_refused_in_one_line(compose, tiny_mnist, tmp_path):
    from lnrepro import distributed
    from lnrepro.resume import checkpoint_to_resume
    from lnrepro.trainer import STATE_KEYS

    cfg = tiny_cfg(compose, tiny_mnist, "resume=true")
    config = OmegaConf.to_container(cfg, resolve=True)
    saved = {**config, "seed": 7}
    ckpt = tmp_path / "checkpoints" / "last.pt"
    ckpt.parent.mkdir()
    torch.save({**dict.fromkeys(STATE_KEYS, 0), "config": saved, "meta": {"threads": 64}}, ckpt)
    with pytest.raises(ConfigError) as e:
        checkpoint_to_resume(cfg, tmp_path, config, distributed.current())
    msg = str(e.value)
    assert "seed: 7 -> 1" in msg and "64 threads" in msg, msg
    assert "seed=7" in msg and "threads=64" in msg and "resume_allow_different_threads" in msg


# ---- resume end to end: the run's own overrides --------------------------------------------
def _train(args, env, timeout=300):
    return subprocess.run(
        [sys.executable, "-m", "lnrepro.train", *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


@pytest.mark.slow  # end to end: three runs of the entrypoint
def test_resume_with_the_run_dir_alone(tmp_path, tiny_mnist):
    from test_hardening import assert_one_error_line, cli_env

    run_dir = tmp_path / "run"
    env = cli_env(tmp_path, tiny_mnist)
    args = [*TINY, "optim.lr=0.002", "trainer.epochs=null", "trainer.eval_every=5"]
    p = _train([*args, "trainer.max_steps=5", f"hydra.run.dir={run_dir}"], env)
    assert p.returncode == 0, p.stderr[-3000:]
    saved = {f: (run_dir / ".hydra" / f).read_text() for f in ("overrides.yaml", "config.yaml")}

    # a resume that differs: refused in one line naming every differing key and the way on (a
    # switched group switched back as a whole), and the run's own .hydra files are left as
    # they were (Hydra rewrote them before the check)
    wrong = ["resume=true", f"hydra.run.dir={run_dir}", "optim.lr=0.5", "seed=4", "norm=bn"]
    line = assert_one_error_line(_train(wrong, env))
    assert "optim.lr: 0.002 -> 0.5" in line and "seed: 1 -> 4" in line, line
    assert "norm.kind: 'ln' -> 'bn'" in line and "norm.momentum: (absent) -> 0.1" in line, line
    assert sorted(_fixes(line)) == ["norm=ln", "optim.lr=0.002", "seed=1"], line
    for f, text in saved.items():
        assert (run_dir / ".hydra" / f).read_text() == text, f

    # what it says to add resumes
    p = _train([*wrong, *_fixes(line), "trainer.max_steps=8"], env)
    assert p.returncode == 0, p.stderr[-3000:]

    # no overrides retyped: the run's own (.hydra/overrides.yaml), those given here win
    p = _train(["resume=true", f"hydra.run.dir={run_dir}", "trainer.max_steps=10"], env)
    assert p.returncode == 0, p.stderr[-3000:]
    assert "overrides.yaml" in p.stdout
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["status"] == "completed" and summary["step"] == 10
    evals = [r["step"] for r in metrics_rows(run_dir / "metrics.jsonl") if "val/err" in r]
    assert evals == [0, 5, 8, 10]
    overrides = yaml.safe_load((run_dir / ".hydra" / "overrides.yaml").read_text())
    assert "optim.lr=0.002" in overrides and "trainer.max_steps=10" in overrides
    assert "trainer.max_steps=5" not in overrides


def test_saved_overrides_are_added_before_those_given(tmp_path):
    from lnrepro.resume import with_saved_overrides

    run_dir = tmp_path / "r"
    (run_dir / ".hydra").mkdir(parents=True)
    saved = ["sweep=pi_mnist_lr", "norm=bn", "+extra=1", "trainer.max_steps=5", "~foo"]
    (run_dir / ".hydra" / "overrides.yaml").write_text(yaml.safe_dump(saved))
    argv = ["resume=true", f"hydra.run.dir={run_dir}", "trainer.max_steps=10", "norm=ln"]
    # a job of a sweep resumes as one run (sweep=<name> sets hydra.mode: MULTIRUN)
    added = ["sweep=pi_mnist_lr", "+extra=1", "~foo", "hydra.mode=RUN"]
    assert with_saved_overrides(argv) == [*added, *argv]
    assert with_saved_overrides([*argv, "hydra.mode=RUN"]) == [*added[:-1], *argv, "hydra.mode=RUN"]
    # not a resume, a multirun, or no saved overrides: unchanged
    for other in (
        [f"hydra.run.dir={run_dir}", "norm=ln"],
        ["-m", "resume=true", f"hydra.run.dir={run_dir}"],
        ["resume=true", f"hydra.run.dir={tmp_path / 'none'}"],
        ["resume=true"],
    ):
        assert with_saved_overrides(other) == other


# ---- a string where a number is wanted -------------------------------------------------------
SCHED = "optim.scheduler={_target_:torch.optim.lr_scheduler.StepLR,_partial_:true,%s}"
STRINGS = {
    "optim.lr": (["optim.lr=abc"], "optim.lr must be a number, got 'abc'"),
    "optim.eps": (["optim.eps=abc"], "optim.eps must be a number, got 'abc'"),
    "optim.betas": (["optim.betas=[a,0.9]"], "optim.betas must be a list of numbers"),
    "sgd momentum": (["optim=sgd", "optim.momentum=x"], "optim.momentum must be a number"),
    "scheduler step_size": (
        ["optim=sgd", SCHED % "step_size:abc,gamma:0.5"],
        "optim.scheduler.step_size must be a number, got 'abc'",
    ),
    "scheduler gamma": (
        ["optim=sgd", SCHED % "step_size:3,gamma:abc"],
        "optim.scheduler.gamma must be a number, got 'abc'",
    ),
    "trainer.line_seconds": (["trainer.line_seconds=abc"], "trainer.line_seconds must be a"),
    "data.val_size": (["data.val_size=abc"], "data.val_size must be a number, got 'abc'"),
    "data.train_eval_size": (["data.train_eval_size=abc"], "data.train_eval_size must be a"),
    "data.permutation_seed": (["data.permutation_seed=x"], "data.permutation_seed must be a"),
    "model.hidden": (["model.hidden=abc"], "model.hidden must be a list of numbers, got 'abc'"),
    "norm.eps": (["norm.eps=abc"], "norm.eps must be a number, got 'abc'"),
    "bn momentum": (["norm=bn", "norm.momentum=abc"], "norm.momentum must be a number"),
}


@pytest.mark.slow  # a whole run(cfg) up to the bad value
@pytest.mark.parametrize("case", list(STRINGS))
def test_a_string_where_a_number_is_wanted_is_one_line(compose, tiny_mnist, tmp_path, case):
    from lnrepro.train import run

    overrides, expected = STRINGS[case]
    with pytest.raises(ConfigError) as e:
        run(tiny_cfg(compose, tiny_mnist, "trainer.max_steps=4", *overrides), tmp_path)
    assert expected in str(e.value) and "\n" not in str(e.value), str(e.value)
    assert not (tmp_path / "metrics.jsonl").exists()  # stopped before training


def test_number_checks_follow_the_signature():
    from lnrepro.checks import check_numbers

    def f(a: int, b: float | None = None, c: str = "x", d=0.5, e: list[int] = (), f: bool = True):
        pass

    check_numbers({"a": 1, "b": None, "c": "y", "d": 1, "e": [1], "f": False, "g": "z"}, f, "p")
    check_numbers({"a": "???", "e": "${x}"}, f, "p", skip=("a", "e"))
    for values, expected in (
        ({"a": "1"}, "p.a must be a number, got '1'"),
        ({"b": "abc"}, "p.b must be a number, got 'abc'"),
        ({"d": "abc"}, "p.d must be a number"),
        ({"e": ["a"]}, "p.e must be a list of numbers, got ['a']"),
    ):
        with pytest.raises(ConfigError, match=expected.replace("[", r"\[").replace("]", r"\]")):
            check_numbers(values, f, "p")
    check_numbers({"f": "auto"}, f, "p")  # a bool is not a number: not this check's business


@pytest.mark.slow  # composes every experiment (~0.5 s each)
@pytest.mark.parametrize(
    "experiment", sorted(p.stem for p in (ROOT / "configs" / "experiment").glob("*.yaml"))
)
def test_every_shipped_config_passes_the_number_checks(compose, experiment):
    """No shipped value is refused: the checks flag only strings where numbers are wanted."""
    from lnrepro.build import check_config_numbers

    check_config_numbers(compose([f"experiment={experiment}"]))


# ---- the +key=value hint ------------------------------------------------------------------
def _composition_error(compose, overrides) -> BaseException:
    with pytest.raises(Exception) as e:
        compose(["experiment=pi_mnist_cpu", *overrides])
    return e.value


def test_no_add_hint_for_a_key_the_norm_lacks(compose):
    line = one_line(_composition_error(compose, ["norm=wn", "norm.momentum=0.5"]))
    assert "norm.momentum" in line and "+key" not in line and "+norm" not in line, line
    assert "configs/norm" in line, line
    # any other unknown key keeps the hint
    line = one_line(_composition_error(compose, ["optim.foo=1"]))
    assert "optim.foo" in line and "+key=value adds one" in line, line
