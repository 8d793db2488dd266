"""The documentation says what the code does and renders: every Markdown heading renders, and a
config's note states its facts instead of pointing at text that is not there."""

from __future__ import annotations

import re
import subprocess

from helpers import ROOT

DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]


def test_markdown_headings_render():
    """`#Title` (no space) is a paragraph in CommonMark, not a heading."""
    bad = []
    for doc in DOCS:
        fenced = False
        for n, line in enumerate(doc.read_text().splitlines(), 1):
            if line.startswith("```"):
                fenced = not fenced
            elif not fenced and re.match(r"#{1,6}[^#\s]", line):
                bad.append(f"{doc.relative_to(ROOT)}:{n}: {line}")
    assert not bad, bad


def test_optuna_note_states_why_the_study_is_in_memory():
    """The Optuna sweep's note on storage says what fails, not "see the README" (which has no
    such paragraph)."""
    text = (ROOT / "configs" / "sweep" / "pi_mnist_optuna.yaml").read_text()
    note = " ".join(line.lstrip("# ") for line in text.splitlines() if line.startswith("#"))
    readme = (ROOT / "README.md").read_text().lower()
    assert "see the readme" not in note.lower() or "sqlite" in readme
    assert "sqlite" in note and "SQLAlchemy 2" in note and "AssertionError" in note


def test_no_comment_cites_an_issue_number():
    """Comments and docs say why and cite the paper or a measured fact, not the number of an
    issue, which a reader of the repository cannot open. The same grep as a reviewer's, over the
    same folders (compiled files left out: they repeat the sources)."""
    folders = ["src", "scripts", "configs", "tests", "docs"]
    grep = ["grep", "-rniE", "--exclude-dir=__pycache__", "issue [0-9]+", *folders]
    out = subprocess.run(grep, cwd=ROOT, capture_output=True, text=True, check=False)
    assert out.returncode == 1, out.stdout or out.stderr  # grep: 1 = no line matched
