"""Every experiment config composes with every norm, and its model builds."""

from pathlib import Path

import hydra
import pytest
import torch
from helpers import ROOT
from omegaconf import OmegaConf

from lnrepro.nn.norm import NormSpec

EXPERIMENTS = sorted(p.stem for p in (ROOT / "configs" / "experiment").glob("*.yaml"))


def test_there_are_experiments():
    assert {"pi_mnist", "pi_mnist_cpu"} <= set(EXPERIMENTS)


@pytest.mark.parametrize("experiment", EXPERIMENTS)
# ~0.5 s per Hydra composition: the fast lane composes every experiment once (ln), `make test`
# with every norm
@pytest.mark.parametrize(
    "norm",
    [
        "ln",
        pytest.param("bn", marks=pytest.mark.slow),
        pytest.param("none", marks=pytest.mark.slow),
    ],
)
def test_experiment_composes_and_builds(compose, experiment, norm):
    cfg = compose([f"experiment={experiment}", f"norm={norm}"])
    OmegaConf.resolve(cfg)  # every interpolation resolves
    assert cfg.name and cfg.norm.kind == norm
    for key in ("data", "model", "task", "optim", "trainer"):
        assert key in cfg, f"{experiment} has no {key}"
    spec = NormSpec.from_cfg(cfg.norm, cfg.data.get("batch_size"))
    # shape fields the data fills at run time (train.py passes data.model_kwargs)
    dims = {"vocab_size": 50, "in_channels": 1, "image_size": 28}
    # (`k in cfg.model` is False for a `???` value: a DictConfig hides missing keys from `in`)
    keys = set(cfg.model.keys())
    extra = {k: v for k, v in dims.items() if k in keys and OmegaConf.is_missing(cfg.model, k)}
    # on the meta device: shapes and init code without the memory and time of the paper-size
    # weights (the 160M-parameter skip-thoughts model takes 18 s to initialise on this CPU);
    # every model also trains end to end on real tensors in its own test file
    with torch.device("meta"):
        model = hydra.utils.instantiate(cfg.model, _convert_="all", norm=spec, **extra)
    assert sum(p.numel() for p in model.parameters()) > 0


def test_paper_setup_of_pi_mnist(compose):
    """Sec. 6.6: 784-1000-1000-10, Adam, batch 128, 55k/5k split, 60 epochs as Figure 6."""
    cfg = compose(["experiment=pi_mnist"])
    assert list(cfg.model.hidden) == [1000, 1000] and cfg.model.in_dim == 784
    assert cfg.optim._target_ == "torch.optim.Adam" and cfg.data.val_size == 5000
    assert cfg.data.batch_size == 128 and cfg.trainer.epochs == 60


def test_missing_experiment_is_reported(compose):
    from lnrepro.callbacks import check_run_keys

    with pytest.raises(Exception, match="experiment"):
        check_run_keys(compose(["norm=ln"]))  # composes (--help works), but cannot run


def test_figure_specs_name_existing_experiments():
    for spec_file in (ROOT / "experiments").glob("*.yaml"):
        spec = OmegaConf.load(spec_file)
        for scale, sc in spec.scales.items():
            assert Path(ROOT / "configs" / "experiment" / f"{sc.experiment}.yaml").exists(), (
                spec_file,
                scale,
            )
