"""scripts/compare_runs.py and the seed bands of scripts/figure.py on run directories written
here by hand: completed runs of one setup over three seeds, a crashed run (metrics.jsonl cut
mid-line, no summary.json), other norms and another experiment."""

from __future__ import annotations

import csv
import json
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from helpers import ROOT, load_script

from lnrepro.runs import find_runs, mean_std, seed_groups, select_runs

compare = load_script("compare_runs")
figure = load_script("figure")


def write_run(
    path: Path,
    *,
    name="pi_mnist_cpu",
    norm="ln",
    seed=1,
    lr=1e-3,
    batch=128,
    val_errs=(0.5, 0.3),
    wall=10.0,
    complete=True,
    cut=False,
) -> Path:
    """A run directory as train.py writes it: .hydra/config.yaml (with the interpolations
    Hydra leaves in it), metrics.jsonl with one eval row per value, summary.json if complete."""
    (path / ".hydra").mkdir(parents=True)
    config = {
        "name": name,
        "seed": seed,
        "norm": {"kind": norm, "eps": 1e-5},
        "optim": {"lr": lr},
        "data": {"batch_size": batch},
        "logger": {"group": "${name}", "tags": ["${name}", "${norm.kind}", f"seed{seed}"]},
        "paths": {"output_dir": str(path)},
    }
    (path / ".hydra" / "config.yaml").write_text(yaml.safe_dump(config))
    rows = [
        {
            "step": 50 * (i + 1),
            "epoch": 0.5 * (i + 1),
            "time": wall * (i + 1) / len(val_errs),
            "val/err": v,
            "test/err": v + 0.01,
        }
        for i, v in enumerate(val_errs)
    ]
    text = "".join(json.dumps(r) + "\n" for r in rows)
    if cut:
        text += '{"step": 999, "val/e'  # the kill came mid-line
    (path / "metrics.jsonl").write_text(text)
    if complete:
        summary = {
            "status": "completed",
            "step": rows[-1]["step"],
            "wall_time": wall,
            "final": {"val/err": val_errs[-1], "test/err": val_errs[-1] + 0.01},
            "best": {"val/err": min(val_errs), "test/err": min(val_errs) + 0.01},
        }
        (path / "summary.json").write_text(json.dumps(summary))
    return path


@pytest.fixture
def root(tmp_path) -> Path:
    r = tmp_path / "outputs"
    # LN at lr 1e-3 over seeds 1-3: final val/err 0.1, 0.2, 0.3 -> 0.2 ± 0.1 (sample std);
    # best 0.05, 0.15, 0.1 -> 0.1 ± 0.05; wall 10, 20, 30 s -> 20
    for seed, errs, wall in ((1, (0.05, 0.1), 10.0), (2, (0.15, 0.2), 20.0), (3, (0.1, 0.3), 30.0)):
        write_run(r / f"ln_s{seed}", seed=seed, val_errs=errs, wall=wall)
    write_run(r / "ln_s4_killed", seed=4, val_errs=(0.6, 0.4, 0.45), complete=False, cut=True)
    write_run(r / "bn_s1", norm="bn", val_errs=(0.2, 0.07))
    write_run(r / "ln_lr3e-3_s1", lr=3e-3, val_errs=(0.3, 0.25))
    write_run(r / "lm", name="lm_ptb_char_cpu", val_errs=(0.9,))
    return r


def rows_of(out: str) -> list[list[str]]:
    """The table's body rows, split on the two-space column gaps."""
    lines = out.splitlines()
    body = lines[2 : lines.index("")]
    return [[c.strip() for c in ln.split("  ") if c.strip()] for ln in body]


def test_mean_and_sample_std_by_hand():
    m, s = mean_std([0.1, 0.2, 0.3])
    assert m == pytest.approx(0.2) and s == pytest.approx(0.1)  # sqrt((0.01 + 0 + 0.01) / 2)
    assert mean_std([0.4]) == (0.4, None)


def test_table_aggregates_seeds_and_shows_the_crashed_run(root, capsys):
    assert (
        compare.main(
            [str(root), "--experiment", "pi_mnist_cpu", "--norm", "ln", "--where", "optim.lr=0.001"]
        )
        == 0
    )
    out = capsys.readouterr().out
    rows = rows_of(out)
    assert len(rows) == 2, out
    done = next(r for r in rows if "completed" in r)
    # experiment norm runs seeds status steps wall | final val/err, best val/err, final/best test
    assert done[:7] == ["pi_mnist_cpu", "ln", "3", "1,2,3", "completed", "100", "20"], done
    assert done[7:9] == ["0.2 ± 0.1", "0.1 ± 0.05"], done
    assert done[9:] == ["0.21 ± 0.1", "0.11 ± 0.05"], done
    killed = next(r for r in rows if "incomplete" in r)
    # one run, seed 4, values as last logged before the cut line: final 0.45, best 0.4
    assert killed[2:6] == ["1", "4", "incomplete", "150"] and killed[7:9] == ["0.45", "0.4"]
    assert f"incomplete: {root / 'ln_s4_killed'}" in out


def test_shown_columns_are_what_varies(root, capsys):
    assert compare.main([str(root), "--experiment", "pi_mnist_cpu", "--metrics", "val/err"]) == 0
    out = capsys.readouterr().out
    header = out.splitlines()[0].split()
    assert "optim.lr" in header and "norm.eps" not in header and "data.batch_size" not in header
    assert header[-4:] == ["final", "val/err", "best", "val/err"]


@pytest.mark.parametrize(
    "args, expect",
    [
        (["--norm", "bn"], {"bn_s1"}),
        (["--group", "lm_ptb_char_cpu"], {"lm"}),
        (["--tag", "seed4"], {"ln_s4_killed"}),
        (["--where", "optim.lr=0.003,0.01", "--norm", "ln,bn"], {"ln_lr3e-3_s1"}),
    ],
)
def test_selection_by_norm_group_tag_and_config_value(root, args, expect):
    from lnrepro.runs import find_runs

    runs = find_runs(root)
    kw = {"norm": None, "group": None, "tag": None, "where": {}}
    for flag, value in zip(args[::2], args[1::2]):
        if flag == "--where":
            k, _, v = value.partition("=")
            kw["where"][k] = v.split(",")
        else:
            kw[flag[2:]] = value.split(",")
    assert {r.path.name for r in select_runs(runs, **kw)} == expect


def test_seed_groups_never_mix_incomplete_runs(root):
    groups = seed_groups(select_runs(find_runs(root), experiment=["pi_mnist_cpu"], norm=["ln"]))
    sizes = sorted((len(g), g[0].status) for g in groups)
    assert sizes == [(1, "completed"), (1, "incomplete"), (3, "completed")]


@pytest.mark.slow  # end to end: a subprocess or a whole training run
def test_no_matching_runs_is_a_message_and_exit_1(root, tmp_path):
    p = subprocess.run(
        [sys.executable, "scripts/compare_runs.py", str(root), "--norm", "gn"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=False,
    )
    assert p.returncode == 1 and p.stdout == ""
    assert p.stderr.strip() == f"no runs match --norm gn in {root} (7 runs there)"
    assert compare.main([str(tmp_path / "nowhere")]) == 1


@pytest.mark.slow  # > 1 s: matplotlib figures
def test_csv_lists_every_run_and_plot_overlays_them(root, tmp_path, capsys):
    csv_file, png = tmp_path / "runs.csv", tmp_path / "cmp.png"
    assert (
        compare.main(
            [
                str(root),
                "--experiment",
                "pi_mnist_cpu",
                "--csv",
                str(csv_file),
                "--plot",
                "val/err",
                "--x",
                "epoch",
                "--out",
                str(png),
            ]
        )
        == 0
    )
    lines = csv_file.read_text().splitlines()
    assert len(lines) == 1 + 6 and sum("incomplete" in ln for ln in lines) == 1
    assert png.stat().st_size > 10_000
    with pytest.raises(SystemExit, match="no selected run logged 'val/bpc'"):
        compare.main([str(root), "--plot", "val/bpc", "--out", str(png)])


@pytest.mark.slow  # > 1 s: imports wandb
def test_wandb_source_without_api_key_is_one_clear_error(monkeypatch, tmp_path, capsys):
    monkeypatch.delenv("WANDB_API_KEY", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))  # no ~/.netrc
    monkeypatch.delenv("NETRC", raising=False)
    assert compare.main(["--wandb", "someone/lnrepro"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: --wandb needs a W&B API key") and "\n" not in err


# ---- scripts/figure.py: mean and min..max band with several seeds, unchanged with one ----

SPEC = {
    "name": "fig_test",
    "title": "test",
    "dataset": "tiny",
    "panels": "data.batch_size",
    "x": "epoch",
    "scales": {"cpu": {"experiment": "pi_mnist_cpu", "seeds": [1]}},
    "norms": ["ln", "bn"],
    "metrics": [{"key": "val/err", "label": "val err"}],
    "table": ["val/err"],
    "labels": {"ln": "LN", "bn": "BN"},
}


def _plot(tmp_path, monkeypatch, seeds):
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

    out = tmp_path / "outputs"
    for norm in ("ln", "bn"):
        for s in seeds:
            write_run(
                out / "figures" / "fig_test" / "cpu" / f"{norm}_{s}",
                norm=norm,
                seed=s,
                val_errs=(0.5, 0.1 * s),
            )
    monkeypatch.setenv("LNREPRO_OUTPUTS", str(out))
    bands, captions = [], []
    real_fill, real_title = Axes.fill_between, Figure.suptitle
    monkeypatch.setattr(
        Axes,
        "fill_between",
        lambda ax, x, lo, hi, **k: bands.append((lo, hi)) or real_fill(ax, x, lo, hi, **k),
    )
    monkeypatch.setattr(
        Figure, "suptitle", lambda fig, t, **k: captions.append(t) or real_title(fig, t, **k)
    )
    # the spec plans the seeds the runs have (a plain `plot` keeps the planned seeds only)
    spec = {**SPEC, "scales": {"cpu": {**SPEC["scales"]["cpu"], "seeds": list(seeds)}}}
    assert figure.plot(spec, "cpu", tmp_path / "results") == 0
    rows = (tmp_path / "results" / "fig_test.csv").read_text().splitlines()
    return bands, captions[0], rows


@pytest.mark.slow  # > 1 s: matplotlib figures
def test_figure_draws_mean_and_t_interval_band_over_seeds(tmp_path, monkeypatch):
    """Seeds ending at 0.1, 0.2, 0.3: the band is the mean's 95 % t interval,
    0.2 -/+ t(0.975, 2) 0.1 / sqrt(3), not min..max."""
    bands, caption, rows = _plot(tmp_path, monkeypatch, seeds=(1, 2, 3))
    assert len(bands) == 2  # one band per norm
    lo, hi = bands[0]
    half = 4.302653 * 0.1 / 3**0.5
    assert list(lo) == [0.5, pytest.approx(0.2 - half)]
    assert list(hi) == [0.5, pytest.approx(0.2 + half)]
    assert "95\N{NO-BREAK SPACE}% t-interval" in caption and "min..max" not in caption
    assert len(rows) == 1 + 6  # the CSV still lists every run


@pytest.mark.slow  # > 1 s: matplotlib figures
def test_confirmatory_seeds_move_the_exploratory_csvs_aside(tmp_path, monkeypatch):
    """A confirmatory plot moves the exploratory CSVs to results/exploratory/ and writes its
    own in results/; an exploratory plot after it writes there, never over them."""
    _plot(tmp_path, monkeypatch, seeds=(1, 2))
    results = tmp_path / "results"
    spec = {**SPEC, "scales": {"cpu": {**SPEC["scales"]["cpu"], "confirmatory_seeds": [11, 12]}}}
    for s in (11, 12):
        for norm in ("ln", "bn"):
            write_run(
                tmp_path / "outputs" / "figures" / "fig_test" / "cpu" / f"{norm}_{s}",
                norm=norm,
                seed=s,
                val_errs=(0.5, 0.1),
            )
    assert figure.plot(spec, "cpu", results, confirmatory=True) == 0

    def seeds(path):
        return sorted({r["seed"] for r in csv.DictReader(open(path))}, key=int)

    assert seeds(results / "fig_test.csv") == ["11", "12"] == seeds(results / "fig_test_curves.csv")
    moved = results / "exploratory"
    assert seeds(moved / "fig_test.csv") == ["1", "2"] == seeds(moved / "fig_test_curves.csv")
    assert (
        figure.plot(
            {**spec, "scales": {"cpu": {**spec["scales"]["cpu"], "seeds": [1]}}}, "cpu", results
        )
        == 0
    )
    assert seeds(results / "fig_test.csv") == ["11", "12"] and seeds(moved / "fig_test.csv") == [
        "1"
    ]


def test_figure_with_one_seed_has_no_band(tmp_path, monkeypatch):
    bands, caption, rows = _plot(tmp_path, monkeypatch, seeds=(1,))
    assert bands == [] and "min..max" not in caption and len(rows) == 1 + 2


def test_wandb_runs_are_read_like_run_directories(monkeypatch, capsys):
    """The W&B path with a stand-in `wandb` module (no server here): config, RunLogger's
    summary and the history become the same table; a crashed run is incomplete."""
    import types

    class FakeRun:
        def __init__(self, id, seed, state, errs, summary):
            self.id, self.state, self._errs = id, state, errs
            self.config = {
                "name": "pi_mnist_cpu",
                "seed": seed,
                "norm": {"kind": "ln"},
                "_meta": {"seed": seed},
            }
            self.summary = {"_runtime": 5, **summary}

        def scan_history(self):
            return [
                {"_step": 10 * (i + 1), "_runtime": i, "epoch": i, "val/err": e}
                for i, e in enumerate(self._errs)
            ]

    runs = [
        FakeRun(
            "a",
            1,
            "finished",
            [0.3, 0.1],
            {
                "status": "completed",
                "step": 20,
                "final": {"val/err": 0.1},
                "best": {"val/err": 0.1},
            },
        ),
        FakeRun(
            "b",
            2,
            "finished",
            [0.4, 0.3],
            {
                "status": "completed",
                "step": 20,
                "final": {"val/err": 0.3},
                "best": {"val/err": 0.3},
            },
        ),
        FakeRun("c", 3, "crashed", [0.5], {}),
    ]
    api = types.SimpleNamespace(runs=lambda path, filters: runs if path == "me/lnrepro" else [])
    monkeypatch.setitem(sys.modules, "wandb", types.SimpleNamespace(Api=lambda timeout: api))
    monkeypatch.setenv("WANDB_API_KEY", "x" * 40)
    assert compare.main(["--wandb", "me/lnrepro", "--metrics", "val/err"]) == 0
    rows = rows_of(capsys.readouterr().out)
    assert ["pi_mnist_cpu", "ln", "2", "1,2", "completed", "20"] == rows[0][:6]
    assert rows[0][7:] == ["0.2 ± 0.14", "0.2 ± 0.14"]  # stdev(0.1, 0.3) = 0.1414
    assert rows[1][2:6] == ["1", "3", "incomplete", "10"] and rows[1][7:] == ["0.5", "0.5"]


def test_grid_progress_counts_runs_as_they_end(tmp_path, capsys):

    done = '{"status": "completed"}'
    for name, status in (("norm=ln,seed=1", done), ("norm=bn,seed=1", '{"status": "running"}')):
        (tmp_path / name).mkdir()
        (tmp_path / name / "summary.json").write_text(status)
    watch = figure.GridProgress(tmp_path, total=4)
    watch.report()
    assert capsys.readouterr().out == ""  # finished before: counted, not reported
    (tmp_path / "norm=bn,seed=1" / "summary.json").write_text(done)
    watch.report()
    watch.report()  # reported once
    out = capsys.readouterr().out.splitlines()
    assert len(out) == 1 and out[0].startswith("run 2/4 done (norm=bn,seed=1), elapsed 0:00:0")
    assert "estimated time left 0:00:0" in out[0]


def test_wandb_filters_are_applied_by_the_server(monkeypatch, capsys):
    """--experiment/--group/--norm/--tag/--where go to the W&B API as one query (a mocked
    wandb.Api records it), so only matching runs (and their histories) are downloaded."""
    import types

    asked = []

    def runs(path, filters):
        asked.append((path, filters))
        return []

    monkeypatch.setitem(
        sys.modules,
        "wandb",
        types.SimpleNamespace(Api=lambda timeout: types.SimpleNamespace(runs=runs)),
    )
    monkeypatch.setenv("WANDB_API_KEY", "x" * 40)
    assert (
        compare.main(
            [
                "--wandb",
                "me/lnrepro",
                "--experiment",
                "pi_mnist_cpu",
                "--norm",
                "ln,bn",
                "--tag",
                "bs4",
                "--where",
                "data.batch_size=4",
            ]
        )
        == 1
    )
    assert asked == [
        (
            "me/lnrepro",
            {
                "$and": [
                    {"config.name": {"$in": ["pi_mnist_cpu"]}},
                    {"config.norm.kind": {"$in": ["ln", "bn"]}},
                    {"tags": {"$in": ["bs4"]}},
                    {"config.data.batch_size": {"$in": ["4", 4]}},
                ]
            },
        )
    ]
    assert "no runs match" in capsys.readouterr().err
    asked.clear()
    compare.main(["--wandb", "me/lnrepro"])
    assert asked == [("me/lnrepro", {})]  # no filter: the whole project


@pytest.mark.slow  # > 1 s: matplotlib figures
def test_figure_norm_columns_series_paper_lines_and_ylim(tmp_path, monkeypatch):
    """Figure 5's layout (a column per group of norms, train dashed and validation solid in one
    panel), Figure 3's dashed paper values and Figure 6's y-range, as the spec asks."""
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib.axes import Axes

    out = tmp_path / "outputs"
    for norm in ("ln", "bn"):
        write_run(out / "figures" / "fig_test" / "cpu" / f"{norm}_1", norm=norm, seed=1)
    monkeypatch.setenv("LNREPRO_OUTPUTS", str(out))
    drawn, panels = [], []
    real_plot, real_hline = Axes.plot, Axes.axhline
    monkeypatch.setattr(
        Axes,
        "plot",
        lambda ax, *a, **k: drawn.append((id(ax), k["label"], k["ls"])) or real_plot(ax, *a, **k),
    )
    monkeypatch.setattr(
        Axes,
        "axhline",
        lambda ax, y, **k: drawn.append((id(ax), k["label"], "paper")) or real_hline(ax, y, **k),
    )
    real_ylim = Axes.set_ylim
    monkeypatch.setattr(
        Axes, "set_ylim", lambda ax, *a, **k: panels.append(a) or real_ylim(ax, *a, **k)
    )
    series = [{"key": "val/err", "name": "train", "ls": "--"}, {"key": "val/err", "name": "val"}]
    metric = {"key": "val/err", "label": "err", "series": series, "paper": {"ln": 0.2}}
    spec = {**SPEC, "panels": None, "xs": ["step"], "norm_columns": [["ln"], ["bn"]]}
    spec["metrics"] = [{**metric, "ylim": [0.01, 1.0]}]
    assert figure.plot(spec, "cpu", tmp_path / "results") == 0
    by_ax: dict = {}
    for ax, label, ls in drawn:
        by_ax.setdefault(ax, []).append((label.split(" (")[0], ls))
    # a column per group of norms; the line styles (train dashed, val solid) are named once
    # in the legend, so the lines themselves carry the norm's name only
    assert sorted(by_ax.values()) == [
        [("_", "--"), ("BN", "-")],
        [("_", "--"), ("LN", "-"), ("LN: paper", "paper")],
    ]
    assert panels.count((0.01, 1.0)) == 2  # (matplotlib calls set_ylim itself too)
