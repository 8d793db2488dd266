"""The import graph of src/lnrepro has no cycle, counting the imports inside functions.

A function-local import hides a cycle from Python (the module is complete by the time the
function runs) but not from a reader: the two modules still depend on each other, so neither
can be understood, tested or moved without the other. The graph is built from the source text
(the AST), not by importing, so every `import` and `from ... import` anywhere in a module
counts: at the top, in functions, under `if TYPE_CHECKING`, in `try` blocks.

An edge A -> B means A names B in an import: `import lnrepro.x.y` and `from lnrepro.x import y`
(y a module) point at lnrepro.x.y; `from lnrepro.x import name` (name not a module) points at
lnrepro.x; relative imports are resolved against A's package. The parent packages Python runs
on the way to B are not edges (every module would depend on lnrepro/__init__.py), but taking a
name from a package's __init__.py is (`from lnrepro import REPO_ROOT`).
"""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = "lnrepro"
SRC = Path(__file__).resolve().parents[1] / "src" / PACKAGE


def modules(root: Path = SRC) -> dict[str, Path]:
    """Dotted module name -> file, for every .py file of the package (a package's name is its
    __init__.py)."""
    out = {}
    for path in sorted(root.rglob("*.py")):
        parts = [PACKAGE, *path.relative_to(root).with_suffix("").parts]
        if parts[-1] == "__init__":
            parts.pop()
        out[".".join(parts)] = path
    return out


def _resolve(module: str, is_package: bool, level: int, name: str | None) -> str:
    """The absolute name of `from <level dots><name> import ...` written in `module`."""
    if not level:
        return name or ""
    base = module.split(".")
    base = base if is_package else base[:-1]
    base = base[: len(base) - (level - 1)]
    return ".".join([*base, name] if name else base)


def imports_of(module: str, path: Path, known: set[str]) -> set[str]:
    """The package's modules that `module` (at `path`) imports anywhere in its source."""
    tree = ast.parse(path.read_text(), filename=str(path))
    is_package = path.name == "__init__.py"
    out = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = _resolve(module, is_package, node.level, node.module)
            for alias in node.names:
                sub = f"{base}.{alias.name}"
                out.add(sub if sub in known else base)
    return {_known_module(name, known) for name in out} - {None, module}


def _known_module(name: str, known: set[str]) -> str | None:
    """The longest prefix of `name` that is a module of the package (`import lnrepro.a.b` where
    b is a function's name is not possible, but `lnrepro.a.b` may name a package's module)."""
    parts = name.split(".")
    while parts:
        if ".".join(parts) in known:
            return ".".join(parts)
        parts.pop()
    return None


def import_graph(root: Path = SRC) -> dict[str, set[str]]:
    files = modules(root)
    known = set(files)
    return {m: imports_of(m, p, known) for m, p in files.items()}


def strongly_connected(graph: dict[str, set[str]]) -> list[list[str]]:
    """Tarjan's strongly connected components with more than one module (a module that imports
    itself is dropped by imports_of)."""
    index, low, on_stack, stack, out = {}, {}, set(), [], []
    counter = [0]

    def visit(v):  # recursion depth is bounded by the package's ~80 modules
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph.get(v, ())):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                out.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return out


def a_cycle(graph: dict[str, set[str]], component: list[str]) -> list[str]:
    """One shortest cycle through the first module of a component (breadth-first), closed:
    [a, b, ..., a]."""
    inside, start = set(component), component[0]
    paths, seen = [[start]], {start}
    while paths:
        nxt = []
        for path in paths:
            for w in sorted(graph[path[-1]] & inside):
                if w == start:
                    return [*path, start]
                if w not in seen:
                    seen.add(w)
                    nxt.append([*path, w])
        paths = nxt
    return component


def test_the_graph_sees_function_local_and_relative_imports(tmp_path):
    """The graph builder itself: a cycle closed only by an import inside a function, and one
    through a relative import and `from pkg import submodule`, are both found."""
    pkg = tmp_path / PACKAGE
    (pkg / "sub").mkdir(parents=True)
    (pkg / "__init__.py").write_text("")
    (pkg / "a.py").write_text("from lnrepro.sub import b\n")
    (pkg / "sub" / "__init__.py").write_text("")
    (pkg / "sub" / "b.py").write_text("def f():\n    from ..a import x\n")
    (pkg / "c.py").write_text("from . import d\n")
    (pkg / "d.py").write_text("import lnrepro.c\n")
    graph = import_graph(pkg)
    assert graph["lnrepro.a"] == {"lnrepro.sub.b"} and graph["lnrepro.sub.b"] == {"lnrepro.a"}
    assert strongly_connected(graph) == [
        ["lnrepro.a", "lnrepro.sub.b"],
        ["lnrepro.c", "lnrepro.d"],
    ]


def test_no_import_cycle_in_src():
    graph = import_graph()
    cycles = [a_cycle(graph, c) for c in strongly_connected(graph)]
    shown = "\n".join(
        f"  {len(c) - 1} modules: {' -> '.join(c)}  (all tied: {', '.join(comp)})"
        for c, comp in zip(cycles, strongly_connected(graph), strict=True)
    )
    assert not cycles, f"{len(cycles)} import cycle(s) in src/{PACKAGE}:\n{shown}"
