"""Mutation testing of the equations and the losses: `make mutation` -> results/mutation.md.

Two parts, because a mutation tool has blind spots:
1. mutmut (pinned in requirements-dev.txt, configured in pyproject.toml [tool.mutmut]) mutates
   every function of the files listed there, one small change at a time, and runs the fast
   tests that cover the mutated function. Resumable: it keeps its results in mutants/ and only
   reruns mutants of functions whose code changed.
2. The planted mistakes in tests/mutants/*.patch (changes mutmut cannot make: module constants,
   dataclass defaults, decorated functions, or mistakes made of several tokens) are applied one
   at a time to a copy of the source; each must make the fast tests fail.

Mutants judged equivalent (no behaviour a user could see changes) are listed with a one-line
reason in tests/mutants/equivalent.txt (`<mutant name>  <reason>`); they are left out of the
kill rate and listed in the report.

    python scripts/mutation.py [--skip-tool] [--skip-planted] [--out results/mutation.md]
    python scripts/mutation.py --only src/lnrepro/nn/norm.py   # one file's mutants (and report)

A full run is ~2,000 mutants (about 40 min on a quiet 2-core machine); `--only` runs the mutants
of the given files of [tool.mutmut] only_mutate and reports those files.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

import tomllib

ROOT = Path(__file__).resolve().parents[1]
PLANTED = ROOT / "tests" / "mutants"
EQUIVALENT = PLANTED / "equivalent.txt"
# mutmut's exit-code convention (mutmut/stats.py)
STATUS = {
    1: "killed",
    3: "killed",
    0: "survived",
    None: "not checked",
    5: "no tests",
    33: "no tests",
    34: "skipped",
    36: "timeout",
    -24: "timeout",
    24: "timeout",
    152: "timeout",
    255: "timeout",
    37: "killed",
}
BLIND_SPOTS = [
    "module-level constants (e.g. `UNBIASED_BELOW`, `BN_GAIN_INIT`, `DEFAULT_T_MAX`)",
    "class bodies and `@dataclass` classes (the `NormSpec` field defaults)",
    (
        "decorated functions (`@staticmethod`, `@torch.no_grad()`, `@once_differentiable`: "
        "`_DeferredWeightGrad.backward`, `LSTM.copy_from_torch`, the tasks' `evaluate`)"
    ),
    (
        "mistakes made of several coordinated edits (a bias moved inside a norm, a reordered "
        "concatenation)"
    ),
]


def _env() -> dict:
    # one OpenMP thread: mutmut forks the test process, and a fork of a process whose OpenMP
    # pool is running hangs (every mutant would time out)
    return {
        **os.environ,
        "OMP_NUM_THREADS": "1",
        "MKL_NUM_THREADS": "1",
        "WANDB_MODE": "disabled",
        "HF_HUB_OFFLINE": "1",
    }


def _config() -> dict:
    return tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["mutmut"]


def fast_tests() -> list[str]:
    cfg = _config()
    return [*cfg["pytest_add_cli_args_test_selection"], *cfg["pytest_add_cli_args"]]


def mutated_files(only: list[str] | None = None) -> list[str]:
    files = _config()["only_mutate"]
    if only:
        unknown = sorted(set(only) - set(files))
        if unknown:
            raise SystemExit(f"--only: not in [tool.mutmut] only_mutate: {', '.join(unknown)}")
        files = [f for f in files if f in only]
    return files


def _module_glob(path: str) -> str:
    """mutmut's name pattern of one file's mutants: src/lnrepro/nn/norm.py -> lnrepro.nn.norm.*"""
    return path.removeprefix("src/").removesuffix(".py").replace("/", ".") + ".*"


def run_tool(only: list[str] | None = None) -> float:
    t0 = time.time()
    names = [_module_glob(p) for p in mutated_files(only)] if only else []
    p = subprocess.run(
        [sys.executable, "-m", "mutmut", "run", *names], cwd=ROOT, env=_env(), check=False
    )
    if p.returncode != 0:  # e.g. "failed to collect stats": the unmutated tests fail
        raise SystemExit(f"mutmut run exited {p.returncode}: the report would be stale")
    return time.time() - t0


def equivalents() -> dict[str, str]:
    out = {}
    if EQUIVALENT.exists():
        for line in EQUIVALENT.read_text().splitlines():
            if line.strip() and not line.startswith("#"):
                name, _, reason = line.strip().partition("  ")
                out[name] = reason.strip()
    return out


def tool_results(only: list[str] | None = None) -> dict[str, Counter]:
    """Per mutated file: counts of killed / survived / timeout / not checked / equivalent."""
    equiv = equivalents()
    per_file: dict[str, Counter] = {}
    for path in mutated_files(only):
        meta = ROOT / "mutants" / f"{path}.meta"
        counts: Counter = Counter()
        if meta.exists():
            for name, code in json.loads(meta.read_text())["exit_code_by_key"].items():
                status = STATUS.get(code, "suspicious")
                if status == "survived" and name in equiv:
                    status = "equivalent"
                counts[status] += 1
                counts["generated"] += 1
        per_file[path] = counts
    return per_file


def survivors(only: list[str] | None = None) -> list[str]:
    equiv = equivalents()
    names = []
    for path in mutated_files(only):
        meta = ROOT / "mutants" / f"{path}.meta"
        if meta.exists():
            for name, code in json.loads(meta.read_text())["exit_code_by_key"].items():
                if code == 0 and name not in equiv:
                    names.append(name)
    return names


def stale_equivalents(only: list[str] | None = None) -> list[str]:
    """Entries of equivalent.txt (of the files reported) that name no surviving mutant of the
    stored results: the code moved, and the entry must follow it or go."""
    codes: dict[str, int | None] = {}
    files = mutated_files(only)
    for path in files:
        meta = ROOT / "mutants" / f"{path}.meta"
        if meta.exists():
            codes |= json.loads(meta.read_text())["exit_code_by_key"]
    prefixes = tuple(_module_glob(p)[:-1] for p in files)
    return [n for n in equivalents() if n.startswith(prefixes) and codes.get(n, -1) != 0]


def run_planted() -> list[tuple[str, str]]:
    """Apply each planted patch to a copy of the project; the fast tests must fail."""
    results = []
    for patch in sorted(PLANTED.glob("*.patch")):
        with tempfile.TemporaryDirectory() as tmp:
            work = Path(tmp)
            for part in ("src", "tests", "configs", "scripts"):
                shutil.copytree(
                    ROOT / part, work / part, ignore=shutil.ignore_patterns("__pycache__", "golden")
                )
            shutil.copy(ROOT / "pyproject.toml", work)
            applied = subprocess.run(
                ["patch", "-p1", "-s", "-i", str(patch)],
                cwd=work,
                capture_output=True,
                text=True,
                check=False,
            )
            if applied.returncode != 0:
                results.append((patch.stem, "does not apply: update the patch"))
                continue
            env = {**_env(), "PYTHONPATH": str(work / "src")}
            p = subprocess.run(
                [sys.executable, "-m", "pytest", *fast_tests()],
                cwd=work,
                env=env,
                capture_output=True,
                text=True,
                check=False,
            )
            results.append(
                (
                    patch.stem,
                    {0: "SURVIVED", 1: "killed"}.get(
                        p.returncode, f"error (pytest exit {p.returncode})"
                    ),
                )
            )
        print(f"  {patch.stem}: {results[-1][1]}", flush=True)
    return results


def report(
    per_file: dict[str, Counter],
    planted,
    tool_seconds,
    planted_seconds,
    note: str = "",
    only: list[str] | None = None,
) -> str:
    lines = [
        "# Mutation testing",
        "",
        (
            "Generated by `make mutation` (scripts/mutation.py): mutmut "
            f"{_mutmut_version()} over the files below against the fast unit tests "
            f"(`{' '.join(fast_tests())}`), then the planted mistakes of `tests/mutants/`. "
            "Kill rate = killed / (generated - equivalent); a timeout counts as killed (the "
            "mutant made the tests hang)."
        ),
        "",
        (
            "| file | generated | killed | timeout | survived | equivalent | not checked | "
            "kill rate |"
        ),
        "|---|---|---|---|---|---|---|---|",
    ]
    for path, c in per_file.items():
        judged = c["generated"] - c["equivalent"]
        rate = f"{100 * (c['killed'] + c['timeout']) / judged:.1f} %" if judged else "-"
        lines.append(
            f"| `{path}` | {c['generated']} | {c['killed']} | {c['timeout']} | "
            f"{c['survived']} | {c['equivalent']} | {c['not checked']} | {rate} |"
        )
    tool = (
        f"mutmut {tool_seconds / 60:.1f} min (resumed runs only redo changed functions)"
        if tool_seconds
        else "mutmut not rerun here (its stored results in mutants/)"
    )
    lines += [
        "",
        (
            f"Wall time: {tool}, planted patches {planted_seconds / 60:.1f} min, on the "
            "2-core CPU machine."
        ),
        "",
    ] + ([note, ""] if note else [])
    equiv = {
        name: why
        for name, why in equivalents().items()
        if not only or any(name.startswith(_module_glob(p)[:-1]) for p in only)
    }
    if equiv:
        lines += ["## Survivors judged equivalent", ""]
        lines += [f"- `{name}`: {reason}" for name, reason in sorted(equiv.items())] + [""]
    stale = stale_equivalents(only)
    if stale:
        lines += ["## Stale entries of equivalent.txt (no such surviving mutant)", ""]
        lines += [f"- `{name}`" for name in stale] + [""]
    left = survivors(only)
    if left:
        lines += ["## Survivors not yet killed", "", "`mutmut show <name>` prints each.", ""]
        lines += [f"- `{name}`" for name in left] + [""]
    lines += ["## Planted mistakes (tests/mutants/*.patch)", "", "| patch | result |", "|---|---|"]
    lines += [f"| `{name}` | {result} |" for name, result in planted]
    lines += [
        "",
        "## Blind spots of the tool (why the planted patches exist)",
        "",
        "mutmut 3 generates no mutants for:",
        "",
    ]
    lines += [f"- {b}" for b in BLIND_SPOTS]
    return "\n".join(lines) + "\n"


def _mutmut_version() -> str:
    from importlib.metadata import version

    return version("mutmut")


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--skip-tool", action="store_true", help="report mutmut's stored results")
    ap.add_argument("--skip-planted", action="store_true")
    ap.add_argument("--out", type=Path, default=ROOT / "results" / "mutation.md")
    ap.add_argument("--note", default="", help="a line added under the table (how it was run)")
    ap.add_argument(
        "--only",
        nargs="+",
        metavar="FILE",
        help="mutate and report only these files of [tool.mutmut] only_mutate",
    )
    args = ap.parse_args(argv)
    mutated_files(args.only)  # an unknown file stops here, before any run
    tool_seconds = 0.0 if args.skip_tool else run_tool(args.only)
    t0 = time.time()
    planted = [] if args.skip_planted else run_planted()
    planted_seconds = time.time() - t0
    per_file = tool_results(args.only)
    text = report(per_file, planted, tool_seconds, planted_seconds, args.note, args.only)
    args.out.write_text(text)
    print(f"wrote {args.out}")
    bad = [n for n, r in planted if r != "killed"]
    if bad:
        print(f"planted mistakes not caught: {', '.join(bad)}", file=sys.stderr)
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
