"""`make smoke`: every CPU-scale experiment for a few updates through the real entrypoint.

    python scripts/smoke.py [--norm ln] [--only pi_mnist_cpu ...]

Runs `python -m lnrepro.train experiment=<name> debug=smoke` for each configs/experiment/*_cpu.yaml
into a temporary folder, and prints one line per experiment: ok (with its wall time), skipped
(its dataset is not on this machine: the loader's "not found" line) or FAILED (the error line).
Exits 1 when one failed. Nothing it writes is kept.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def experiments() -> list[str]:
    return sorted(p.stem for p in (ROOT / "configs" / "experiment").glob("*_cpu.yaml"))


def smoke(name: str, norm: str, out: Path) -> tuple[str, str]:
    env = {**os.environ, "LNREPRO_OUTPUTS": str(out), "WANDB_MODE": "disabled"}
    t0 = time.perf_counter()
    p = subprocess.run(
        [
            sys.executable,
            "-m",
            "lnrepro.train",
            f"experiment={name}",
            f"norm={norm}",
            "debug=smoke",
            f"hydra.run.dir={out / name}",
        ],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    took = time.perf_counter() - t0
    errors = [ln for ln in p.stderr.splitlines() if "[ERROR]" in ln or ln.startswith("error:")]
    line = (errors[-1] if errors else (p.stderr.strip().splitlines() or ["?"])[-1])[:300]
    if p.returncode == 0:
        return "ok", f"{took:.0f} s"
    if p.returncode == 2 and "not found" in line:
        return "skipped", line.split(" - ", 1)[-1]
    return "FAILED", f"exit {p.returncode}: {line}"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--norm", default="ln")
    ap.add_argument("--only", nargs="*", help="experiment names (default: every *_cpu)")
    args = ap.parse_args()
    names = args.only or experiments()
    failed = 0
    with tempfile.TemporaryDirectory(prefix="lnrepro-smoke-") as tmp:
        for name in names:
            status, why = smoke(name, args.norm, Path(tmp))
            failed += status == "FAILED"
            print(f"{name:24s} {status:8s} {why}", flush=True)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
