"""Shared fixtures and the test lanes. The helpers they are built on are in helpers.py.

Lanes: `make test-fast` runs the tests not marked `slow`; `make test` runs them all. Mark `slow`
every test that runs an end-to-end training run (the entrypoint in a subprocess, or a whole
`run(cfg)`) or takes more than about a second. Tests of the real datasets are marked
`@pytest.mark.realdata("<path under LNREPRO_DATA>", ...)`: that implies `slow`, and such a test is
skipped, saying what is missing, when LNREPRO_DATA is unset or lacks one of the paths; the
`real_data` fixture gives the folder."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch
from helpers import ROOT, real_data_missing, run_cli, write_idx_mnist

# W&B off for speed; the one W&B test turns offline mode on for itself.
os.environ["WANDB_MODE"] = "disabled"
os.environ.setdefault("HF_HUB_OFFLINE", "1")


@pytest.hookimpl(tryfirst=True)  # before `-m` selects: `-m "not slow"` leaves realdata out
def pytest_collection_modifyitems(items):
    for item in items:
        if item.get_closest_marker("realdata") is not None:
            item.add_marker(pytest.mark.slow)


def pytest_runtest_setup(item):
    marker = item.get_closest_marker("realdata")
    if marker is not None:
        why = real_data_missing(*marker.args)
        if why:
            pytest.skip(why)


@pytest.fixture
def real_data(request) -> Path:
    """LNREPRO_DATA, the folder of the real datasets (for tests marked `realdata`)."""
    assert request.node.get_closest_marker("realdata"), "mark the test @pytest.mark.realdata(...)"
    return Path(os.environ["LNREPRO_DATA"])


@pytest.fixture(autouse=True)
def one_thread():
    """One torch thread for every test: the tensors of the tests are tiny, and a second OpenMP
    thread only adds its start and its barriers. On a shared 2-core machine it costs far more:
    a 150-step BN-LSTM forward (batch 4) took 5.2 s of CPU with 2 threads against 0.07 s with
    one (the spinning barrier waits for a thread that another process holds off the core), and
    the fast lane's gradchecks of recurrent BN took 5-19 s each. Each test starts with one
    thread (a run with `threads=2` sets its own) and the count before it is restored after it.
    Autouse; modules still name it in `pytestmark = usefixtures("one_thread")`."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="session", autouse=True)
def cache_root(tmp_path_factory) -> Path:
    """The session's caches (parsed corpora, binarizations, file digests) go to a temporary
    folder, not the user's ~/.cache/lnrepro; a LNREPRO_CACHE set by the user is kept."""
    os.environ.setdefault("LNREPRO_CACHE", str(tmp_path_factory.mktemp("cache")))
    return Path(os.environ["LNREPRO_CACHE"])


@pytest.fixture(scope="session")
def tiny_mnist(tmp_path_factory) -> Path:
    return write_idx_mnist(tmp_path_factory.mktemp("data"))


@pytest.fixture
def compose():
    """compose(overrides) -> the config `python -m lnrepro.train <overrides>` would run."""
    from hydra import compose as hydra_compose
    from hydra import initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra

    import lnrepro  # noqa: F401  (registers the ${lnrepro_root:} resolver)

    def _compose(overrides):
        GlobalHydra.instance().clear()
        with initialize_config_dir(str(ROOT / "configs"), version_base="1.3"):
            return hydra_compose("train", overrides=list(overrides))

    yield _compose
    GlobalHydra.instance().clear()


@pytest.fixture
def cli(tmp_path, tiny_mnist):
    def _cli(*args, data_dir=tiny_mnist, **kw):
        return run_cli(args, tmp_path, data_dir, **kw)

    return _cli
