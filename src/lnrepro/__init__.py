"""lnrepro: a reproduction of Layer Normalization (Ba, Kiros, Hinton 2016)."""

from pathlib import Path

from omegaconf import OmegaConf

REPO_ROOT = Path(__file__).resolve().parents[2]

# `${lnrepro_root:}` in configs: the repository root, so default paths do not depend on the cwd.
if not OmegaConf.has_resolver("lnrepro_root"):
    OmegaConf.register_new_resolver("lnrepro_root", lambda: str(REPO_ROOT))
