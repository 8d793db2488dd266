"""SentEval on the encoder of a skip-thoughts checkpoint; prints a table. This is
`scripts/eval.py <ckpt> --split none`: SentEval is the skip-thoughts task's evaluation hook,
and eval.py evaluates a checkpoint of any experiment.

    python scripts/eval_skip.py outputs/.../checkpoints/last.pt [--tasks MR CR SICK]
        [--senteval DIR] [--threads N] [--folds 10] [--inner-folds 3] [--max-examples N]
        [--json FILE] [key=value ...]

Options not given are the run's own (its task.senteval: tasks, folds, SentEval folder). Missing
task files are reported as skipped, with the reason. Protocol: lnrepro.eval.senteval.
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path


def _eval_script():
    """scripts/eval.py as a module (the scripts are not a package)."""
    spec = importlib.util.spec_from_file_location(
        "lnrepro_eval_script", Path(__file__).with_name("eval.py")
    )
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def main(argv=None, log_to_stdout: bool = False) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    script = _eval_script()
    if log_to_stdout:  # the SentEval table is a log line of the task's hook
        script.log_to_stdout()
    return script.main([*argv, "--split", "none"], require_model="SkipThoughts")


if __name__ == "__main__":
    sys.exit(main(log_to_stdout=True))
