"""The modules that the package and the scripts share, so that each fact is written once:
lnrepro.checks, lnrepro.artifacts (atomic CSV and text files, checkpoint reading) and the figure
helpers of lnrepro.runs, and the Makefile's figure table as lnrepro.claims reads it."""

from __future__ import annotations

import csv
import json

import pytest
import yaml
from helpers import ROOT

from lnrepro import artifacts, checks
from lnrepro.claims import make_targets
from lnrepro.errors import ConfigError, DataError
from lnrepro.runs import checkpointed_run_per_norm, outputs_root, sweep_dir


@pytest.mark.parametrize("bad", [0, -3, 1.5, "4", None, True])
def test_positive_int_refuses_with_one_line(bad):
    with pytest.raises(
        ConfigError, match=rf"^data\.batch_size must be a positive integer, got {bad!r}$"
    ):
        checks.positive_int(bad, "data.batch_size")


def test_int_checks_accept():
    assert checks.positive_int(3, "x") == 3 and checks.int_at_least(0, "x", minimum=0) == 0
    assert checks.int_at_least(None, "x", allow_none=True) is None
    with pytest.raises(ConfigError, match=r"^data\.max_len must be an integer >= 1, got None$"):
        checks.int_at_least(None, "data.max_len")
    assert checks.is_int(2) and not checks.is_int(False) and not checks.is_int(2.0)


def test_write_csv_is_what_the_csv_module_writes_and_leaves_no_temporary(tmp_path):
    rows = [["ln", 1, None, 0.5], ["bn", 2, "a,b", float("nan")]]
    path = tmp_path / "sub" / "t.csv"
    artifacts.write_csv(path, ["norm", "seed", "note", "value"], rows)
    with open(tmp_path / "ref.csv", "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["norm", "seed", "note", "value"])
        w.writerows(rows)
    assert path.read_bytes() == (tmp_path / "ref.csv").read_bytes()
    assert [p.name for p in path.parent.iterdir()] == ["t.csv"]


def test_an_unreadable_checkpoint_is_one_data_error(tmp_path):
    bad = tmp_path / "last.pt"
    bad.write_bytes(b"not a checkpoint")
    with pytest.raises(DataError, match=r"^checkpoint .*last\.pt cannot be read \("):
        artifacts.read_checkpoint(bad)
    with pytest.raises(DataError, match=r"^no checkpoints/last\.pt \(not a finished"):
        artifacts.load_run_model(tmp_path, "DRAW", "DRAW", dict)


def _run(path, norm, seed, checkpoint=True):
    (path / ".hydra").mkdir(parents=True)
    (path / ".hydra" / "config.yaml").write_text(
        yaml.safe_dump({"seed": seed, "norm": {"kind": norm}})
    )
    (path / "metrics.jsonl").write_text(json.dumps({"step": 1, "epoch": 0, "time": 1}) + "\n")
    if checkpoint:
        (path / "checkpoints").mkdir()
        (path / "checkpoints" / "last.pt").write_bytes(b"")


def test_one_checkpointed_run_per_norm_lowest_seed_ln_first(tmp_path, monkeypatch):
    monkeypatch.setenv("LNREPRO_OUTPUTS", str(tmp_path / "out"))
    spec = tmp_path / "fig.yaml"
    spec.write_text(yaml.safe_dump({"name": "fig"}))
    assert outputs_root() == tmp_path / "out"
    root = sweep_dir({"name": "fig"}, "cpu")
    assert root == tmp_path / "out" / "figures" / "fig" / "cpu"
    with pytest.raises(SystemExit, match="run `make figure9` first"):
        checkpointed_run_per_norm(spec, "cpu", "figure9")
    _run(root / "a", "bn", 1)
    _run(root / "b", "none", 2)
    _run(root / "c", "ln", 3)
    _run(root / "d", "ln", 2)
    _run(root / "e", "ln", 1, checkpoint=False)
    assert [p.name for p in checkpointed_run_per_norm(spec, "cpu", "figure9")] == ["d", "b", "a"]


def test_the_makefile_figure_table_names_every_figure_target():
    targets, order = make_targets(ROOT / "Makefile")
    assert targets == {
        "figure2_reader": "figure2",
        "figure2_reader_gain": "figure2-gain",
        "figure3_skip_thoughts": "figure3",
        "figure4_draw": "figure4",
        "figure5_handwriting": "figure5",
        "figure6_pi_mnist": "figure6",
        "lm_ptb_char": "figure-lm",
        "lm_ptb_word": "figure-lm-word",
        "cnn_mnist": "figure-cnn",
        "table2_order_embeddings": "table2",
    }
    assert order[0] == "figure2_reader" and "figure2_reader_gain" not in order
