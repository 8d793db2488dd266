"""Golden runs: every CPU-scale experiment and norm, rerun once and checked in two tiers.

Bit-exact: against the set recorded on this machine's CPU model and capability
(tests/golden/<cpu>-<capability>/, lnrepro.golden); other kernels on another CPU move results in
the 7th digit, so a case this machine has no file for is skipped, naming the command that
records it. Portable: the same rerun against every other CPU's set, within the tolerances of
lnrepro.golden.PORTABLE, so a fresh machine still checks its numbers.

A refactor must leave every field of every `metrics.jsonl` row unchanged (wall-clock times
aside). When numbers move on purpose, regenerate with `make golden` in a commit that names the
issue and why, and map renamed fields here (FIELD_MAP) so the old file still checks the rest.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from lnrepro import golden

ROOT = Path(__file__).resolve().parents[1]
CASES = golden.case_names()

# Deliberate changes since the golden files were recorded, while they are pending: new field ->
# (old field, the old code's expression of it from the new value), applied to the rerun's rows
# so the check stays bit for bit; and renamed config keys of the recorded overrides. Emptied when
# `make golden` re-records (the last use: SentEval's errors -> accuracies in commit 4144b1b, e.g.
# "senteval/mr_acc": ("senteval/mr_err", lambda v: 100.0 - v), "data.senteval." ->
# "task.senteval."; see that commit).
FIELD_MAP: dict = {}
OVERRIDE_MAP: dict[str, str] = {}
# Whole overrides replaced where they equal the key: the word-PTB cases were recorded with
# experiment=lm_ptb_word_cpu, whose protocol now lives under this name (the same config values).
OVERRIDE_RENAMES: dict[str, str] = {
    "experiment=lm_ptb_word_cpu": "experiment=lm_ptb_word_cpu_compressed"
}


def _as_recorded(row: dict) -> dict:
    out = {}
    for k, v in row.items():
        old, f = FIELD_MAP.get(k, (k, None))
        out[old] = f(v) if f else v
    return out


def _overrides(overrides: list[str]) -> list[str]:
    for old, new in OVERRIDE_MAP.items():
        overrides = [o.replace(old, new) if o.startswith(old) else o for o in overrides]
    return [OVERRIDE_RENAMES.get(o, o) for o in overrides]


_RERUNS: dict[tuple, list[dict]] = {}  # overrides -> the rerun's rows: one run feeds both tiers


def _rerun(name: str, doc: dict, tmp_path: Path) -> list[dict]:
    if doc["torch"] != torch.__version__:
        pytest.skip(
            f"recorded with torch {doc['torch']}, this is {torch.__version__}: "
            "floating-point results are only reproducible within one torch build"
        )
    key = tuple(_overrides(doc["overrides"]))
    if key not in _RERUNS:
        _RERUNS[key] = [_as_recorded(r) for r in golden.run_case(list(key), tmp_path)]
    return _RERUNS[key]


def own_golden_file(name: str) -> Path:
    """This machine's golden file of a case; a skip naming the command that records it when
    this CPU has none (a fresh machine: the portable tier still checks the rerun)."""
    path = golden.machine_dir() / f"{name}.json"
    if not path.exists():
        pytest.skip(
            f"no golden file of {name} for this CPU ({golden.cpu_name()}, "
            f"{golden.cpu_capability()}): `make golden ONLY={name}` records it "
            "(the portable tier checks this case against the other CPUs' sets)"
        )
    return path


def other_golden_files(name: str) -> list[Path]:
    """The case's files recorded on the other CPUs."""
    own = golden.machine_dir()
    return [
        d / f"{name}.json"
        for d in golden.recorded_sets()
        if d != own and (d / f"{name}.json").exists()
    ]


def _load(path: Path) -> dict:
    return json.loads(path.read_text())


def test_golden_sets_are_named_by_their_cpu_and_hold_known_cases():
    sets = golden.recorded_sets()
    assert sets, "no golden set at all: run `make golden`"
    for d in sets:
        docs = [_load(p) for p in d.glob("*.json")]
        assert {doc["case"] for doc in docs} <= set(CASES), d
        assert all(golden.machine_dir(doc["cpu"], doc["cpu_capability"]) == d for doc in docs), d


def test_no_file_is_ahead_of_its_cases_numerics_revision():
    """A revision is bumped in the commit that moves the numbers, never after recording."""
    for d in golden.recorded_sets():
        for path in d.glob("*.json"):
            doc = _load(path)
            assert doc.get("numerics", 1) <= golden.numerics_of(doc["case"]), path


def test_recorded_overrides_are_the_cases_own():
    """`make golden` records what the check reruns: a case's overrides live in one place."""
    for d in golden.recorded_sets():
        for path in d.glob("*.json"):
            assert _overrides(_load(path)["overrides"]) == golden.overrides_of(path.stem), path


def test_every_case_has_a_tolerance_and_a_golden_file_somewhere():
    assert set(golden.PORTABLE) == set(CASES)
    recorded = {p.stem for d in golden.recorded_sets() for p in d.glob("*.json")}
    assert recorded == set(CASES), f"no CPU has recorded {sorted(set(CASES) - recorded)}"


def test_an_unknown_cpu_skips_its_missing_cases_with_the_command_to_record_them(monkeypatch):
    monkeypatch.setattr(golden, "cpu_name", lambda: "Imaginary CPU 9000")
    with pytest.raises(pytest.skip.Exception, match=r"make golden ONLY=reader_ln"):
        own_golden_file("reader_ln")
    # ... and every recorded set is "another CPU's": the portable tier compares with all of them
    assert len(other_golden_files("reader_ln")) == len(golden.recorded_sets())


def test_recorded_error_rates_are_whole_counts_of_their_denominators():
    for d in golden.recorded_sets():
        for path in d.glob("*.json"):
            doc = _load(path)
            counts = golden.EXAMPLES.get(doc["case"].rsplit("_", 1)[0], {})
            for row in doc["rows"]:
                for key, v in row.items():
                    if key in counts:
                        assert abs(v * counts[key] - round(v * counts[key])) < 1e-6, (path, key, v)
                    elif key.endswith(("/err", "_acc")):
                        pytest.fail(f"{path.name}: {key} has no denominator in golden.EXAMPLES")


def test_recorded_sets_agree_within_the_portable_tolerances():
    """The tolerances hold between the sets they were measured on (no rerun needed)."""
    sets = golden.recorded_sets()
    pairs = 0
    for i, a in enumerate(sets):
        for b in sets[i + 1 :]:
            for path in a.glob("*.json"):
                if (b / path.name).exists():
                    got, want = _load(path)["rows"], _load(b / path.name)["rows"]
                    assert golden.portable_mismatches(path.stem, got, want) == [], path.stem
                    pairs += 1
    assert pairs or len(sets) < 2


def test_portable_tier_catches_what_it_must():
    want = _load(golden.recorded_sets()[0] / "pi_mnist_bs128_bn.json")["rows"]
    same = [dict(r) for r in want]
    assert golden.portable_mismatches("pi_mnist_bs128_bn", same, want) == []

    def moved(step, key, value):
        rows = [dict(r) for r in want]
        row = next(r for r in rows if r["step"] == step and key in r)
        row[key] = value(row[key])
        return golden.portable_mismatches("pi_mnist_bs128_bn", rows, want)

    tol = golden.PORTABLE["pi_mnist_bs128_bn"]
    last = max(r["step"] for r in want)
    # the initial evaluation: 2e-6 relative or 2 examples fail; later rows get the case's tolerance
    assert moved(0, "val/nll", lambda v: v * (1 + 2 * golden.FIRST_REL))
    assert moved(0, "val/err", lambda v: v + 2 / 10000)
    assert not moved(0, "val/err", lambda v: v + 1 / 10000)
    assert not moved(last, "val/nll", lambda v: v * (1 + 0.5 * tol.rel))
    assert moved(last, "val/nll", lambda v: v * (1 + 2 * tol.rel))
    assert not moved(last, "test/err", lambda v: v + tol.examples / 10000)
    assert moved(last, "test/err", lambda v: v + (tol.examples + 1) / 10000)
    assert moved(last, "val/nll", lambda v: float("nan"))
    assert moved(last, "epoch", lambda v: v + 1e-9)
    with pytest.raises(ValueError, match="metrics rows"):
        golden.portable_mismatches("pi_mnist_bs128_bn", want[:-1], want)
    with pytest.raises(ValueError, match="fields"):
        golden.portable_mismatches("pi_mnist_bs128_bn", [{**want[0], "new": 1.0}, *want[1:]], want)


@pytest.mark.realdata  # the datasets of every case
@pytest.mark.parametrize("name", CASES)
def test_golden_run_is_bit_identical(name: str, tmp_path: Path):
    doc = _load(own_golden_file(name))
    if doc.get("numerics", 1) < golden.numerics_of(name):
        pytest.skip(
            f"{name} on this CPU was recorded before its numerics revision "
            f"{golden.numerics_of(name)} ({golden.NUMERICS[name][1]}): `make golden ONLY={name}` "
            "re-records it (the portable tier checks it meanwhile)"
        )
    rows = _rerun(name, doc, tmp_path)
    want = doc["rows"]
    assert len(rows) == len(want), f"{len(rows)} metrics rows, golden has {len(want)}"
    for got, exp in zip(rows, want):
        assert got == exp, f"step {exp.get('step')}: {got} != {exp}"


@pytest.mark.realdata
@pytest.mark.parametrize("name", CASES)
def test_golden_run_is_within_the_portable_tolerances(name: str, tmp_path: Path):
    others = other_golden_files(name)
    if not others:
        pytest.skip(f"no other CPU has recorded {name}")
    for path in others:
        doc = _load(path)
        rows = _rerun(name, doc, tmp_path)  # the bit-exact tier's rerun when it ran one
        bad = golden.portable_mismatches(name, rows, doc["rows"])
        assert not bad, f"against {path.parent.name}:\n" + "\n".join(bad)
