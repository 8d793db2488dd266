"""scripts/table3.py: Table 3 from the figure3 runs, one row per norm, mean ± sd over seeds."""

from helpers import load_script

table3 = load_script("table3")


class FakeRun:
    def __init__(self, norm, seed, mr):
        self.cfg = {
            "norm.kind": norm,
            "seed": seed,
            "model.hidden_size": 512,
            "data.vocab_size": 4000,
            "data.paths": ["books/gutenberg_pd"],
        }
        self.summary = {"final": {"senteval/mr_acc": mr, "senteval/sick_r": 0.5}}
        self.steps, self.status = 772, "completed"

    def get(self, key):
        return self.cfg.get(key)


def test_one_row_per_norm_with_mean_and_sample_std(tmp_path, monkeypatch):
    runs = [FakeRun("ln", 1, 60.0), FakeRun("ln", 2, 62.0), FakeRun("none", 1, 55.0)]
    monkeypatch.setattr(table3, "spec_runs", lambda spec, scale: (tmp_path, runs))
    out = tmp_path / "t3.md"
    assert table3.main(["--out", str(out)]) == 0
    rows = [line for line in out.read_text().splitlines() if "(cpu scale:" in line]
    assert len(rows) == 2  # GRU first, then LN
    assert "seeds 1)" not in rows[1] and "mean ± sd over seeds 1, 2" in rows[1]
    assert "| 61.0 ± 1.4 |" in rows[1]  # MR: mean 61, sample sd sqrt(2)
    assert "| 55.0 |" in rows[0] and "| 0.500 ± 0.000 |" in rows[1]
