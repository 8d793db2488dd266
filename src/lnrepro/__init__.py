"""lnrepro: a reproduction of Layer Normalization (Ba, Kiros, Hinton 2016)."""

from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]

try:
    from omegaconf import OmegaConf
except ImportError:  # a bare torch + numpy machine (scripts/gpu_check.py): no configs to resolve
    OmegaConf = None

# `${lnrepro_root:}` in configs: the repository root, so default paths do not depend on the cwd.
if OmegaConf is not None and not OmegaConf.has_resolver("lnrepro_root"):
    OmegaConf.register_new_resolver("lnrepro_root", lambda: str(REPO_ROOT))


def _norm_kind(target=None) -> str:
    from lnrepro.nn.norm import kind_of  # (torch: only where a config asks for it)

    return kind_of(target)


# `${lnrepro_norm_kind:<module.Class>}` in configs/norm/own.yaml: a norm class's short name.
if OmegaConf is not None and not OmegaConf.has_resolver("lnrepro_norm_kind"):
    OmegaConf.register_new_resolver("lnrepro_norm_kind", _norm_kind)
