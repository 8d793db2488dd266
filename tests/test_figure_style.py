"""How scripts/figure.py draws a figure from the two CSVs of results/ (`render`, `draw`): the
paper's axes (Figure 6 of Ba et al. 2016: a linear test-error axis), one legend per figure, the
mean over seeds with a 95 % t-interval band, seeds that split drawn one by one, floors as grey
dotted lines, y-ranges read off the trained part of the curves, compared conditions in one
panel, a short caption. Small synthetic specs and CSVs in tmp_path; no run folder."""

from __future__ import annotations

import csv
import math

import matplotlib
import pytest
from helpers import ROOT, load_script

from lnrepro.runs import COLORS, load_spec

matplotlib.use("Agg")
import matplotlib.pyplot as plt
from matplotlib.colors import to_rgba

figure = load_script("figure")

T_975_2 = 4.302652729911275  # t_{0.975} with 2 degrees of freedom (tables)


def write_results(results, name, runs, grid_keys=(), scale="cpu"):
    """results/<name>.csv and <name>_curves.csv as `plot` writes them, from
    runs = [(norm, seed, {grid key: value}, {metric: [(step, epoch, value), ...]})]."""
    results.mkdir(parents=True, exist_ok=True)
    head = ["scale", "experiment", "norm", *grid_keys, "seed", "status", "steps", "epochs"]
    head += ["wall_time_s", "s_per_update"]
    with open(results / f"{name}.csv", "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(head)
        for norm, seed, grid, metrics in runs:
            last = max(p for pts in metrics.values() for p in pts)
            row = [scale, "toy_cpu", norm, *[grid[k] for k in grid_keys], seed, "completed"]
            w.writerow([*row, last[0], last[1], 10.0, 0.01])
    with open(results / f"{name}_curves.csv", "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["norm", "seed", *grid_keys, "step", "epoch", "metric", "value"])
        for norm, seed, grid, metrics in runs:
            for metric, pts in metrics.items():
                for step, epoch, value in pts:
                    w.writerow(
                        [norm, seed, *[grid[k] for k in grid_keys], step, epoch, metric, value]
                    )


def curve(values, every=100):
    """[(step, epoch, value)] at steps 0, every, 2 * every, ... (10 updates an epoch)."""
    return [(k * every, k * every / 10, v) for k, v in enumerate(values)]


def toy_spec(**extra):
    spec = {
        "name": "toy",
        "title": "Toy figure",
        "dataset": "toy data (a stand-in)",
        "scales": {"cpu": {"experiment": "toy_cpu", "seeds": [1, 2, 3]}},
        "grid": {},
        "norms": ["ln", "none"],
        "panels": None,
        "xs": ["step"],
        "metrics": [{"key": "val/err", "label": "validation error"}],
        "labels": {"ln": "LN", "none": "baseline"},
    }
    return {**spec, **extra}


def lines_of(ax, norm):
    """The Line2D of `norm`'s colour in `ax` (curves, not reference lines)."""
    c = to_rgba(COLORS.get(norm))
    return [ln for ln in ax.get_lines() if to_rgba(ln.get_color()) == c and ln.get_ls() == "-"]


def bands_of(ax, norm):
    c = to_rgba(COLORS.get(norm), 0.18)
    return [pc for pc in ax.collections if tuple(pc.get_facecolor()[0]) == pytest.approx(c)]


@pytest.fixture(scope="module")
def figure6(tmp_path_factory):
    """The committed Figure 6 spec, drawn from synthetic CSVs: 3 seeds of LN, BN and the
    baseline at batch 128 and 4; the first (untrained) test error is 90 %."""
    spec = load_spec(ROOT / "experiments" / "figure6_pi_mnist.yaml")
    results = tmp_path_factory.mktemp("results")
    runs = []
    for k, norm in enumerate(("ln", "bn", "none")):
        for bs in ("128", "4"):
            for seed in (1, 2, 3):
                final = 0.014 + 0.002 * k + 0.0005 * seed
                err = [0.9] + [final + 0.02 / (i + 1) for i in range(8)]
                nll = [2.3] + [0.01 * (3 + k) / (i + 1) + 0.001 * seed for i in range(8)]
                metrics = {"test/err": curve(err), "train/nll": curve(nll)}
                runs.append((norm, seed, {"data.batch_size": bs}, metrics))
    write_results(results, spec["name"], runs, grid_keys=["data.batch_size"])
    fig = figure.render(spec, "cpu", results)
    yield fig
    plt.close(fig)


def test_figure6_test_error_axis_is_linear_with_percent_ticks(figure6):
    axes = [ax for ax in figure6.axes if ax.get_ylabel().startswith("test error")]
    assert len(axes) == 2  # batch 128 and batch 4
    for ax in axes:
        assert ax.get_yscale() == "linear"  # Figure 6 of Ba et al. 2016
        low, high = ax.get_ylim()
        assert 0.005 < low < 0.02 and 0.025 < high < 0.05  # the final errors fill the panel
        labels = [ax.yaxis.get_major_formatter()(v, 0) for v in ax.get_yticks()]
        assert all(label.endswith("%") for label in labels) and len(labels) >= 4


def test_one_legend_per_figure(figure6):
    assert len(figure6.legends) == 1
    assert all(ax.get_legend() is None for ax in figure6.axes)
    texts = [t.get_text() for t in figure6.legends[0].get_texts()]
    assert len(texts) == len(set(texts)) == 3  # one entry per norm, not one per panel


def test_caption_is_at_most_two_lines_under_the_title(figure6):
    title, *caption = figure6.get_suptitle().split("\n")
    assert title == "Permutation-invariant MNIST (Sec. 6.6, Figure 6)"
    assert 1 <= len(caption) <= 2
    assert "95" in figure6.get_suptitle() and "min..max" not in figure6.get_suptitle()


def test_band_is_the_95_percent_t_interval_of_the_mean(tmp_path):
    finals = (0.30, 0.32, 0.37)
    runs = [
        ("ln", s, {}, {"val/err": curve([0.9, 0.6, 0.45, 0.4, f])})
        for s, f in zip((1, 2, 3), finals)
    ]
    runs += [("none", s, {}, {"val/err": curve([0.9, 0.7, 0.6, 0.55, 0.5])}) for s in (1, 2, 3)]
    write_results(tmp_path, "toy", runs)
    fig = figure.render(toy_spec(), "cpu", tmp_path)
    (ax,) = fig.axes
    mean = sum(finals) / 3
    sd = math.sqrt(sum((f - mean) ** 2 for f in finals) / 2)  # n - 1 = 2
    half = T_975_2 * sd / math.sqrt(3)  # = 0.0896
    (band,) = bands_of(ax, "ln")
    at_end = [y for x, y in band.get_paths()[0].vertices if x == 400]
    assert min(at_end) == pytest.approx(mean - half) and max(at_end) == pytest.approx(mean + half)
    (line,) = lines_of(ax, "ln")
    assert line.get_ydata()[-1] == pytest.approx(mean) and line.get_marker() == "o"
    (band,) = bands_of(ax, "none")  # identical seeds: a band of width 0
    assert {round(y, 9) for x, y in band.get_paths()[0].vertices if x == 400} == {0.5}
    plt.close(fig)


def test_seeds_that_split_are_drawn_one_line_each(tmp_path):
    """Figure 2's reader: two LSTM seeds learn, one stays stuck; LN's seeds agree."""
    stuck = [0.62, 0.61, 0.60, 0.59, 0.58]
    learn = [0.62, 0.55, 0.45, 0.38, 0.35]
    runs = [("none", 1, {}, {"val/err": curve(learn)}), ("none", 2, {}, {"val/err": curve(stuck)})]
    runs += [("none", 3, {}, {"val/err": curve([v + 0.003 for v in learn])})]
    runs += [
        ("ln", s, {}, {"val/err": curve([0.62, 0.5, 0.42, 0.38, 0.36 + 0.005 * s])})
        for s in (1, 2, 3)
    ]
    write_results(tmp_path, "toy", runs)
    fig = figure.render(toy_spec(), "cpu", tmp_path)
    (ax,) = fig.axes
    seeds = lines_of(ax, "none")
    assert len(seeds) == 3 and not bands_of(ax, "none")  # each seed, no mean, no band
    assert sorted(round(ln.get_ydata()[-1], 3) for ln in seeds) == [0.35, 0.353, 0.58]
    assert all(ln.get_linewidth() < 1.2 for ln in seeds)
    assert len(lines_of(ax, "ln")) == 1 and len(bands_of(ax, "ln")) == 1  # mean and band
    legend = [t.get_text() for t in fig.legends[0].get_texts()]
    assert "baseline (3 seeds, each drawn: they split)" in legend
    assert "seeds that split" in fig.get_suptitle()
    plt.close(fig)


def test_floor_lines_where_floors_csv_has_the_metric_and_paper_lines(tmp_path):
    runs = [
        (n, s, {}, {"val/err": curve([0.9, 0.5, 0.4]), "val/nll": curve([2.0, 1.2, 1.0])})
        for n in ("ln", "none")
        for s in (1, 2, 3)
    ]
    write_results(tmp_path, "toy", runs)
    (tmp_path / "floors.csv").write_text(
        "figure,scale,experiment,metric,floor,model\n"
        "toy,cpu,toy_cpu,val/err,0.55,most frequent entity\n"
        "toy,paper,toy,val/nll,1.1,not this scale\n"
        "other,cpu,toy_cpu,val/nll,1.1,not this figure\n"
    )
    metrics = [
        {"key": "val/err", "label": "validation error", "paper": {"ln": 0.35}},
        {"key": "val/nll", "label": "validation NLL"},
    ]
    fig = figure.render(toy_spec(metrics=metrics), "cpu", tmp_path)
    err, nll = fig.axes

    def dotted(ax):
        return [ln for ln in ax.get_lines() if ln.get_ls() == ":"]

    (floor,) = dotted(err)
    assert list(floor.get_ydata()) == [0.55, 0.55] and floor.get_label() == "most frequent entity"
    assert to_rgba(floor.get_color())[:3] == pytest.approx(to_rgba("0.45")[:3])  # grey
    assert not dotted(nll)
    (paper,) = [ln for ln in err.get_lines() if ln.get_ls() == "--"]
    assert list(paper.get_ydata()) == [0.35, 0.35]
    assert to_rgba(paper.get_color()) == to_rgba(COLORS.get("ln"))  # in the norm's colour
    assert "most frequent entity" in [t.get_text() for t in fig.legends[0].get_texts()]
    plt.close(fig)


def test_y_range_leaves_out_an_outlying_first_evaluation(tmp_path):
    values = [5.0, 1.0, 0.8, 0.7, 0.65, 0.6, 0.58, 0.56, 0.55, 0.54, 0.53]
    runs = [(n, s, {}, {"val/err": curve(values)}) for n in ("ln", "none") for s in (1, 2)]
    write_results(tmp_path, "toy", runs)
    fig = figure.render(toy_spec(), "cpu", tmp_path)
    low, high = fig.axes[0].get_ylim()
    assert 0.4 < low < 0.53 and 0.8 < high < 1.5  # not stretched to the untrained 5.0
    plt.close(fig)
    metric = {"key": "val/err", "label": "validation error", "ylim": [0.0, 6.0]}
    fig = figure.render(toy_spec(metrics=[metric]), "cpu", tmp_path)
    assert fig.axes[0].get_ylim() == (0.0, 6.0)  # the spec's own range wins
    plt.close(fig)


def test_gain_ablation_conditions_share_one_axes(tmp_path):
    """The committed spec of Sec. 6.2's gain ablation: both gain inits in one panel, two
    colours, two legend texts."""
    spec = load_spec(ROOT / "experiments" / "figure2_reader_gain.yaml")
    runs = [
        ("ln", s, {"norm.gain_init": g}, {"val/err": curve([0.6, 0.55, base + 0.003 * s])})
        for g, base in (("1.0", 0.40), ("0.1", 0.45))
        for s in (1, 2, 3)
    ]
    write_results(tmp_path, spec["name"], runs, grid_keys=["norm.gain_init"])
    fig = figure.render(spec, "cpu", tmp_path)
    (ax,) = [ax for ax in fig.axes if ax.get_visible()]
    curves = [ln for ln in ax.get_lines() if ln.get_ls() == "-" and ln.get_label()[0] != "_"]
    assert len(curves) == 2
    assert len({to_rgba(ln.get_color()) for ln in curves}) == 2
    labels = {ln.get_label() for ln in curves}
    assert len(labels) == 2 and all("gain init" in label for label in labels)
    plt.close(fig)


def test_figure5_draws_every_norm_in_one_panel(tmp_path):
    """Figure 5 of Ba et al. 2016 compares LN and the baseline in one panel; the extra BN curve
    joins them instead of a column of its own. Train dashed, validation solid, explained once."""
    spec = load_spec(ROOT / "experiments" / "figure5_handwriting.yaml")
    runs = []
    for norm, seeds in (("ln", (1, 2, 3)), ("none", (1, 2, 3)), ("bn", (1,))):
        for s in seeds:
            nll = curve([900, 100, -200, -300, -320 + s], every=250)
            metrics = {k: nll for k in ("train/nll_seq", "val/nll_seq", "batch/nll_seq")}
            runs.append((norm, s, {}, metrics))
    write_results(tmp_path, spec["name"], runs)
    fig = figure.render(spec, "cpu", tmp_path)
    first = fig.axes[0]
    colours = {to_rgba(ln.get_color()) for ln in first.get_lines()}
    assert colours == {to_rgba(COLORS.get(n)) for n in ("ln", "none", "bn")}
    assert {ln.get_ls() for ln in first.get_lines()} == {"-", "--"}
    legend = [t.get_text() for t in fig.legends[0].get_texts()]
    assert "train (fixed subset)" in legend and "validation" in legend
    plt.close(fig)


def test_draw_writes_the_png_from_the_csvs_alone_with_its_fingerprint(tmp_path):
    spec_path = ROOT / "experiments" / "figure2_reader_gain.yaml"
    spec = load_spec(spec_path)
    runs = [
        ("ln", s, {"norm.gain_init": g}, {"val/err": curve([0.6, 0.5, 0.4 + 0.01 * s])})
        for g in ("1.0", "0.1")
        for s in (1, 2, 3)
    ]
    write_results(tmp_path, spec["name"], runs, grid_keys=["norm.gain_init"])
    assert figure.main(["draw", str(spec_path), "--out", str(tmp_path)]) == 0
    png = tmp_path / f"{spec['name']}.png"
    assert figure.png_text(png)["lnrepro-figure"] == figure.fingerprint(spec, png)
    assert figure.stale_figures(tmp_path) == {}
    (tmp_path / "floors.csv").write_text(
        "figure,scale,experiment,metric,floor,model\n"
        f"{spec['name']},cpu,reader_cpu,val/err,0.5,a floor\n"
    )
    assert spec["name"] in figure.stale_figures(tmp_path)  # its floors are drawn from too
