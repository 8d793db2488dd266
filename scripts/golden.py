"""Record, compare and challenge the golden runs (the cases and the tiers: lnrepro.golden).

python scripts/golden.py record [--only NAME ...]   # `make golden`: this CPU's set in tests/golden/
python scripts/golden.py list                       # the case names
python scripts/golden.py compare A B                # how far two recorded sets differ, per case
python scripts/golden.py suggest                    # the tolerance rule over every recorded pair
python scripts/golden.py mutants [--patch P ...]    # does each tier catch tests/mutants/*.patch?
(pytest tests/test_golden.py reruns every case and checks both tiers)
"""

from __future__ import annotations

import argparse
import json
import math
import os
import subprocess
import sys
import tempfile
from pathlib import Path

from lnrepro import golden
from lnrepro.golden import ROOT, case_names, record


def _rows(folder: Path, name: str) -> list[dict] | None:
    path = folder / f"{name}.json"
    return json.loads(path.read_text())["rows"] if path.exists() else None


def compare(a: Path, b: Path) -> None:
    """Per case: the largest relative difference before / after the first update, the largest
    error-count difference, and whether the portable tier's tolerances hold."""
    print(f"{'case':22s} {'first rel':>9s} {'later rel':>9s} {'examples':>8s}  portable")
    for name in case_names():
        ra, rb = _rows(a, name), _rows(b, name)
        if ra is None or rb is None:
            print(f"{name:22s} {'(not in both sets)':>28s}")
            continue
        diffs = golden.differences(name, ra, rb)
        first = max((d["value"] for d in diffs if d["kind"] == "rel" and d["first"]), default=0)
        later = max((d["value"] for d in diffs if d["kind"] == "rel" and not d["first"]), default=0)
        count = max((d["value"] for d in diffs if d["kind"] == "examples"), default=0)
        ok = "ok" if not golden.portable_mismatches(name, ra, rb) else "FAILS"
        print(f"{name:22s} {first:9.1e} {later:9.1e} {count:8.0f}  {ok}")


def _up125(x: float) -> float:
    """x rounded up to 1, 2 or 5 times a power of ten."""
    e = math.floor(math.log10(x))
    return next(m * 10.0**e for m in (1, 2, 5, 10) if m * 10.0**e >= x * (1 - 1e-9))


def suggest(sets: list[Path]) -> None:
    """The tolerance rule of lnrepro.golden.PORTABLE over every pair of recorded sets: rel = 3x
    the largest later-row difference (at least 1e-5) rounded up to 1/2/5, examples = 2x the
    largest count difference (at least 2)."""
    first = 0.0
    for name in case_names():
        rel, count, pairs = 0.0, 0.0, 0
        for i, a in enumerate(sets):
            for b in sets[i + 1 :]:
                ra, rb = _rows(a, name), _rows(b, name)
                if ra is None or rb is None:
                    continue
                pairs += 1
                for d in golden.differences(name, ra, rb):
                    if d["kind"] == "examples":
                        count = max(count, d["value"])
                    elif d["first"]:
                        first = max(first, d["value"])
                    else:
                        rel = max(rel, d["value"])
        tol = golden.Tolerance(_up125(max(1e-5, 3 * rel)), max(2, math.ceil(2 * count)))
        print(f"{name:22s} pairs {pairs}  measured {rel:.1e}, {count:.0f}  ->  {tol}")
    print(f"rows before the first update: largest difference {first:.1e} relative")


def _copy_with_patch(patch: Path, work: Path) -> bool:
    """src/ and configs/ as committed (HEAD), with the patch applied."""
    tar = subprocess.run(
        ["git", "archive", "HEAD", "src", "configs"], cwd=ROOT, capture_output=True, check=True
    ).stdout
    subprocess.run(["tar", "-x", "-C", str(work)], input=tar, check=True)
    p = subprocess.run(
        ["patch", "-p1", "-s", "-i", str(patch.resolve())],
        cwd=work,
        capture_output=True,
        check=False,
    )
    return p.returncode == 0


def _likely_first(patch: Path, names: list[str]) -> list[str]:
    """The cases a patch most likely moves first (by the words of its name), then the rest:
    the order only saves time, every case still runs until both tiers have caught it."""
    words = set(patch.stem.split("_"))
    hints = {"bn": "_bn", "lstm": "_ln", "lstmcell": "_ln", "gru": "skip_thoughts", "ln": "_ln"}
    wanted = [h for w, h in hints.items() if w in words]
    return sorted(names, key=lambda n: not any(h in n for h in wanted))


def mutants(patches: list[Path]) -> int:
    """Rerun the golden cases with each planted mistake applied (a patched copy of the committed
    src/ and configs/ first on PYTHONPATH); per patch, the first case each tier fails on. The bit-exact
    tier compares with this machine's set; the portable tier with the other CPUs' sets, and with
    this machine's own where no other CPU has the case (same tolerances)."""
    own = golden.machine_dir()
    others = [d for d in golden.recorded_sets() if d != own]
    failed_to_catch = 0
    for patch in patches:
        exact = portable = None
        with tempfile.TemporaryDirectory() as tmp:
            work = Path(tmp)
            if not _copy_with_patch(patch, work):
                print(f"{patch.stem}: does not apply", flush=True)
                continue
            os.environ["PYTHONPATH"] = str(work / "src")
            for name in _likely_first(patch, case_names()):
                refs = [d / f"{name}.json" for d in others if (d / f"{name}.json").exists()]
                if not refs and (own / f"{name}.json").exists():
                    refs = [own / f"{name}.json"]
                mine = own / f"{name}.json"
                doc = json.loads((mine if mine.exists() else refs[0]).read_text())
                try:
                    rows = golden.run_case(doc["overrides"], work / name)
                except RuntimeError as e:  # a patch that makes the run fail is caught by both
                    exact = exact or f"{name} (run fails)"
                    portable = portable or f"{name} (run fails)"
                    print(f"  {name}: {str(e).splitlines()[-1][:120]}", flush=True)
                    break
                if exact is None and mine.exists() and rows != doc["rows"]:
                    exact = name
                if portable is None:
                    for ref in refs:
                        try:
                            bad = golden.portable_mismatches(
                                name, rows, json.loads(ref.read_text())["rows"]
                            )
                        except ValueError as e:
                            bad = [str(e)]
                        if bad:
                            portable = f"{name} vs {ref.parent.name}: {bad[0]}"
                            break
                if exact and portable:
                    break
        os.environ.pop("PYTHONPATH", None)
        if exact and not portable:
            failed_to_catch += 1
        print(
            f"{patch.stem}: bit-exact {exact or 'not caught'}; portable {portable or 'not caught'}",
            flush=True,
        )
    return 1 if failed_to_catch else 0


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("action", choices=["record", "list", "compare", "suggest", "mutants"])
    ap.add_argument("sets", nargs="*", help="compare: two folders of tests/golden/")
    ap.add_argument("--only", nargs="*", default=None, help="case names (default: all)")
    ap.add_argument("--patch", nargs="*", default=None, help="mutants: patch files (default: all)")
    args = ap.parse_args(argv)
    names = args.only or case_names()
    if args.action == "list":
        print("\n".join(names))
        return 0
    if args.action == "compare":
        if len(args.sets) != 2:
            ap.error(
                "compare takes two folders, e.g. tests/golden/amd-epyc-avx512 tests/golden/..."
            )
        compare(*(Path(s) for s in args.sets))
        return 0
    if args.action == "suggest":
        suggest(golden.recorded_sets())
        return 0
    if not os.environ.get("LNREPRO_DATA"):
        print("error: golden runs use the real datasets: set LNREPRO_DATA", file=sys.stderr)
        return 2
    if args.action == "mutants":
        patches = (
            [Path(p) for p in args.patch]
            if args.patch
            else sorted((ROOT / "tests" / "mutants").glob("*.patch"))
        )
        return mutants(patches)
    for name in names:
        print(f"recording {name} ...", flush=True)
        print(f"  {record(name).relative_to(ROOT)}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
