"""From a composed config to a run's parts: the config's values checked before anything is
built (`check_config`), then the norm, task, data module, model and optimizer it names, each
by its `_target_` (`build`), a bad value one ConfigError line."""

from __future__ import annotations

import hydra
import torch
from hydra.errors import InstantiationException
from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import MissingMandatoryValue, OmegaConfBaseException

from lnrepro import distributed
from lnrepro.callbacks import check_writable
from lnrepro.checks import check_numbers
from lnrepro.data.common import cache_root
from lnrepro.errors import ConfigError, LnreproError
from lnrepro.nn.norm import Norm, NormSpec
from lnrepro.runlog import check_logger
from lnrepro.trainer import TrainerConfig


def check_config(cfg: DictConfig) -> dict:
    """The run's config resolved to plain values, after the checks that need nothing built: a
    writable cache folder, the logger's settings, a number wherever one is wanted."""
    check_writable(cache_root(), "caches", "set LNREPRO_CACHE to a writable folder")
    config = OmegaConf.to_container(cfg, resolve=True)
    check_logger(config["logger"])
    check_config_numbers(cfg)
    return config


def build(node, **kwargs):
    """`hydra.utils.instantiate`, reporting a bad config value as one ConfigError line."""
    try:
        return hydra.utils.instantiate(node, _convert_="all", **kwargs)
    except InstantiationException as e:
        cause = e.__cause__
        if isinstance(cause, LnreproError):
            raise cause from None
        raise ConfigError(str(e).replace("\n", " ")) from None
    except MissingMandatoryValue as e:
        raise ConfigError(f"a required config value is missing: {e.full_key} (???)") from None


def check_config_numbers(cfg: DictConfig) -> None:
    """A string where a number is wanted (optim.lr=abc, optim.scheduler.step_size=abc,
    data.val_size=abc, model.hidden=abc, norm.eps=abc, trainer.line_seconds=abc, ...) as one
    ConfigError line naming the key, before anything is built or trained: each node is checked
    against the signature of what it builds (lnrepro.checks.check_numbers); without this, such
    a value fails as a TypeError deep inside torch or the loop, or only when it is first used."""

    def values(node) -> dict:
        out = {}
        for k in node:
            if OmegaConf.is_missing(node, k):
                continue  # ??? (filled from the data)
            try:
                v = node[k]
            except OmegaConfBaseException:
                continue  # an interpolation that does not resolve: reported where it is used
            out[k] = OmegaConf.to_container(v, resolve=True) if OmegaConf.is_config(v) else v
        return out

    def target(node):
        try:
            return hydra.utils.get_object(str(node._target_))
        except Exception:  # noqa: BLE001  (an unknown _target_: `build` says so in one line)
            return None

    built = [(key, cfg.get(key)) for key in ("data", "model", "task", "optim")]
    optim = cfg.get("optim")
    if isinstance(optim, DictConfig) and isinstance(optim.get("scheduler"), DictConfig):
        built.append(("optim.scheduler", optim.scheduler))
    for key, node in built:
        if isinstance(node, DictConfig) and "_target_" in node and (t := target(node)):
            check_numbers(values(node), t, key, skip=("scheduler", "interval"))
    check_numbers(values(cfg.trainer), TrainerConfig, "trainer")
    if isinstance(cfg.get("norm"), DictConfig):
        check_numbers(values(cfg.norm), NormSpec, "norm")


def build_optimizer(node, model):
    """The optimizer (a partial: `Adam(params, **cfg.optim)`) and its optional learning-rate
    schedule `optim.scheduler` (a partial over torch.optim.lr_scheduler, plus `interval`:
    step | epoch, popped before it is built). Bad values (lr < 0, ...) are one ConfigError."""
    optim = OmegaConf.to_container(node, resolve=True)
    sched = optim.pop("scheduler", None)
    try:
        optimizer = build(optim)(model.parameters())
        if sched is None:
            return optimizer, None, "step"
        interval = sched.pop("interval", "step")
        return optimizer, build(sched)(optimizer), interval
    except (TypeError, ValueError, RuntimeError) as e:
        raise ConfigError(f"optim: {e}") from None


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
        torch.empty(0, device=device)
    except (RuntimeError, AssertionError) as e:
        raise ConfigError(f"device={name!r} is not usable here: {e}") from None
    return device


def build_norm(cfg: DictConfig, batch_size, world) -> Norm:
    """The run's norm (lnrepro.nn.norm.Norm, the class of `norm._target_`); a norm that cannot
    train with this batch size (BN at batch size 1) is one ConfigError."""
    norm = NormSpec.from_cfg(cfg.norm, batch_size)
    distributed.rank_batch(batch_size, world, norm)
    norm.check_batch(batch_size)
    return norm


def build_parts(cfg: DictConfig, norm: NormSpec, device):
    """Task, data module and model (lnrepro.contracts), in the order that fixes the random
    numbers: the task first (it checks its own files, e.g. SentEval, before the data loads),
    then the seed, the data, the model. Built as in one process: under torchrun
    lnrepro.distributed.wrap puts them on the processes."""
    task = build(cfg.task)
    torch.manual_seed(cfg.seed)
    data = build(cfg.data, seed=cfg.seed, device=device)
    # shape fields the data decides (vocab_size, image size, ...) fill the model config's `???`
    dims = data.model_kwargs
    for k, v in dims.items():
        if k in cfg.model and not OmegaConf.is_missing(cfg.model, k) and cfg.model[k] != v:
            raise ConfigError(f"model.{k}={cfg.model[k]} does not match the data ({k}={v})")
    model = build(cfg.model, norm=norm, **dims).to(device)
    norm.check_model(model)  # a model that ignored a part of its norm: one line, not a silent run
    return task, data, model
