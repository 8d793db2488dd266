"""No code outside the norm module decides by a norm's name.

A model, a cell, the entrypoint or a report that compared `norm.kind` with "bn" (or kept a table
keyed by "ln", ...) would treat a norm of your own as none of them: drop its biases, give it no
recurrent layer, skip its batch-size guard. Those decisions belong to the norm object
(`lnrepro.nn.norm.Norm`); this test walks the syntax tree of every module of src/ except
nn/norm.py and fails on a comparison, an `in` test, a dict key or a match case with a built-in
norm's name, and on `.kind` read where a decision is made (a comparison, a condition, a
subscript, a dict key). Reading `.kind` to record or show it (a log line, summary.json) is fine.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest
from helpers import ROOT

from lnrepro.nn.norm import NORM_KINDS

SRC = ROOT / "src" / "lnrepro"
NORM_MODULE = SRC / "nn" / "norm.py"
FILES = sorted(p for p in SRC.rglob("*.py") if p != NORM_MODULE)


def _names(node: ast.AST) -> list[str]:
    """Built-in norm names and `.kind` reads anywhere inside `node`."""
    found = []
    for n in ast.walk(node):
        if isinstance(n, ast.Constant) and n.value in NORM_KINDS:
            found.append(repr(n.value))
        elif isinstance(n, ast.Attribute) and n.attr == "kind":
            found.append(".kind")
    return found


def name_checks(source: str) -> list[tuple[int, str]]:
    """(line, what) of every decision by a norm's name in `source`."""
    hits = []
    for node in ast.walk(ast.parse(source)):
        where: list[ast.AST] = []
        if isinstance(node, ast.Compare):  # ==, !=, in, not in, is
            where = [node.left, *node.comparators]
        elif isinstance(node, (ast.If, ast.While, ast.IfExp, ast.Assert)):
            # `if norm.kind:` and the like (a bare name in a condition is a constant, not a test)
            where = [n for n in [node.test] if not isinstance(n, ast.Compare)]
            where = [n for n in where if any(h == ".kind" for h in _names(n))]
        elif isinstance(node, ast.Dict):
            where = [k for k in node.keys if k is not None]
        elif isinstance(node, ast.Subscript):
            where = [node.slice]
        elif isinstance(node, ast.match_case):
            where = [node.pattern]
        elif isinstance(node, ast.Call) and getattr(node.func, "attr", None) in ("get", "pop"):
            where = node.args[:1]  # table.get("bn") / table.get(norm.kind)
        for part in where:
            for name in _names(part):
                hits.append((node.lineno if hasattr(node, "lineno") else part.lineno, name))
    return hits


def test_the_check_sees_what_it_must():
    caught = [
        'if norm.kind == "bn": pass',
        'bias = spec.kind in ("none", "wn")',
        'x = "ln" != kind',
        'COLORS = {"ln": "tab:red"}',
        "y = table[norm.kind]",
        "y = table.get(norm.kind)",
        'y = table.get("rms", 0)',
        "z = 1 if self.kind else 0",
        'match kind:\n    case "bn":\n        pass',
    ]
    fine = [
        'meta = {"norm": norm.kind}',
        'log.info("norm=%s", norm.kind)',
        "self.kind = norm.kind",
        'F.cross_entropy(a, b, reduction="none")',
        'if kind == "mnist": pass',
        "names = ('bn', 'wn')",
        'r.get("norm.kind")',
    ]
    for code in caught:
        assert name_checks(code), code
    for code in fine:
        assert not name_checks(code), code


@pytest.mark.parametrize("path", FILES, ids=lambda p: str(p.relative_to(SRC)))
def test_no_name_checks_outside_the_norm_module(path: Path):
    hits = name_checks(path.read_text())
    assert not hits, (
        f"{path.relative_to(ROOT)} decides by a norm's name at "
        + ", ".join(f"line {line} ({what})" for line, what in hits)
        + ": ask the norm object instead (lnrepro.nn.norm.Norm: keeps_bias, wrap_weight, "
        "step_layer, check_batch, ...)"
    )


def test_the_norm_module_is_where_the_names_live():
    assert name_checks(NORM_MODULE.read_text())  # (so the walk above would see them)
