"""lnrepro.hydra_patch, the one replacement of a private Hydra function
(`hydra._internal.utils.run_and_report`), pinned to the hydra-core version it was checked with:
on another version this fails, so that whoever upgrades Hydra re-reads the private code the
patch relies on before moving the pin."""

from __future__ import annotations

import inspect

import hydra
import hydra._internal.utils as hydra_utils
import pytest
from hydra.errors import ConfigCompositionException

from lnrepro import hydra_patch
from lnrepro.errors import DataError


def test_pinned_to_the_installed_hydra():
    assert hydra.__version__ == hydra_patch.CHECKED_WITH, (
        f"hydra-core is {hydra.__version__}, but src/lnrepro/hydra_patch.py replaces "
        f"hydra._internal.utils.run_and_report as hydra-core {hydra_patch.CHECKED_WITH} "
        "has it: check that Hydra's main still calls run_and_report by name around composing "
        "and running (_run_hydra), that it still returns what the launcher's jobs returned, "
        "and whether a public route now does both; then set CHECKED_WITH"
    )


def test_what_the_patch_relies_on():
    """Hydra's main reaches run_and_report through the module's global name (so replacing the
    module attribute takes effect), around composing the config and around the sweep's
    `hydra.multirun`, whose result (the launcher's job returns) the patch reads."""
    assert "run_and_report(" in inspect.getsource(hydra_utils._run_hydra)
    assert "run_and_report(\n            lambda: hydra.multirun(" in inspect.getsource(
        hydra_utils._run_app
    )
    assert list(inspect.signature(hydra_utils.run_and_report).parameters) == ["func"]


def _report(func):
    return func()  # Hydra's run_and_report, without its printing


def test_errors_and_failed_jobs_exit_with_their_code(capsys):
    patched = hydra_patch.one_line_errors(_report, exit_code=lambda r: 3 if r == "failed" else None)
    assert patched(lambda: "ok") == "ok"
    with pytest.raises(SystemExit) as e:
        patched(lambda: "failed")
    assert e.value.code == 3

    def compose_error():
        raise ConfigCompositionException("Could not override 'x'.\nTo append, use +x=1")

    with pytest.raises(SystemExit) as e:
        patched(compose_error)
    assert e.value.code == 2
    assert capsys.readouterr().err == "error: Could not override 'x'\n"  # its first line

    def data_error():
        raise DataError("no data")

    with pytest.raises(SystemExit) as e:
        patched(data_error)
    assert e.value.code == DataError.exit_code


def test_installed_once(monkeypatch):
    monkeypatch.setattr(hydra_utils, "run_and_report", _report)
    hydra_patch.install(lambda r: None)
    first = hydra_utils.run_and_report
    hydra_patch.install(lambda r: None)
    assert hydra_utils.run_and_report is first is not _report
