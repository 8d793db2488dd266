"""Every committed figure is what the code as committed draws from its committed CSVs
(`python scripts/figure.py check`: a fingerprint of the plotting code, the spec's plotting keys
and the CSVs, stored in the PNG when it is drawn)."""

from helpers import load_script

figure = load_script("figure")

# Figures drawn before the fingerprint existed, whose run folders are gone, so that they cannot
# be redrawn without rerunning them: each leaves this list when its seeded runs (3 or more seeds a
# norm, tests/test_figure_seeds.py) are redone. The test fails when one of them is fresh again, so the list cannot go stale itself.
KNOWN_STALE: set[str] = set()


def test_committed_figures_are_fresh():
    stale = figure.stale_figures()
    assert set(stale) == KNOWN_STALE, {k: v for k, v in stale.items() if k not in KNOWN_STALE}


def test_a_changed_csv_makes_its_figure_stale(tmp_path):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    results = tmp_path / "results"
    results.mkdir()
    spec = figure.load_spec(figure.ROOT / "experiments" / "figure6_pi_mnist.yaml")
    for suffix in (".csv", "_curves.csv"):
        (results / f"{spec['name']}{suffix}").write_text("norm,seed\nln,1\n")
    png = results / f"{spec['name']}.png"
    fig = plt.figure()
    figure.save_figure(fig, png, metadata={"lnrepro-figure": figure.fingerprint(spec, png)})
    plt.close(fig)
    assert figure.stale_figures(results) == {}  # (the other figures are not in this folder)
    (results / f"{spec['name']}_curves.csv").write_text("norm,seed\nln,2\n")
    assert "figure6_pi_mnist" in figure.stale_figures(results)


def test_plot_code_lists_every_function_the_drawing_calls():
    """`fingerprint` hashes the source of PLOT_CODE (and the values of PLOT_CONSTANTS): every
    function, class and constant of scripts/figure.py that `draw` reaches must be listed there,
    or a change to it would leave the committed figures looking fresh."""
    import ast
    import inspect
    import textwrap

    own = {
        name
        for name, obj in vars(figure).items()
        if (inspect.isfunction(obj) or inspect.isclass(obj))
        and getattr(obj, "__module__", None) == figure.__name__
    }
    module = ast.parse((figure.ROOT / "scripts" / "figure.py").read_text())
    constants = {  # assigned at the top of the file (not imported, as COLORS is)
        t.id
        for node in module.body
        if isinstance(node, (ast.Assign, ast.AugAssign))
        for t in (node.targets if isinstance(node, ast.Assign) else [node.target])
        if isinstance(t, ast.Name) and t.id.isupper()
    }
    seen, todo, used = {"fingerprint"}, ["draw"], set()  # (the hash itself: not drawing)
    while todo:
        name = todo.pop()
        if name in seen:
            continue
        seen.add(name)
        obj = getattr(figure, name)
        sources = (
            [inspect.getsource(f) for f in vars(obj).values() if inspect.isfunction(f)]
            if inspect.isclass(obj)
            else [inspect.getsource(obj)]
        )
        for src in sources:
            for node in ast.walk(ast.parse(textwrap.dedent(src))):
                if isinstance(node, ast.Name):
                    if node.id in own:
                        todo.append(node.id)
                    elif node.id in constants:
                        used.add(node.id)
    assert seen - set(figure.PLOT_CODE) == {"fingerprint"}
    assert used - set(figure.PLOT_CONSTANTS) - {"PLOT_CODE", "PLOT_KEYS"} == set()
