"""Order-embedding model of captions and images (Vendrov et al. 2016; the paper's Sec. 6.1).

    caption:  s = |normalize(GRU(emb(w_1 .. w_n, <eos>)) at <eos>)|     (dim units)
    image:    i = |normalize(W x + b)|                                   (x: 4096-d VGG features)

Both embeddings are L2-normalised, then made non-negative by the absolute value (Vendrov et
al.'s `abs` option, on in their order model): the reversed product order lives on the positive
orthant. Outputs only; the order-violation penalty and the ranking loss are in
lnrepro.tasks.order_embeddings.

norm: "ln" is the paper's LN-GRU (supplementary Eq. 23-28; Sec. 6.1: Vendrov et al.'s encoder
with layer norm), "none" Vendrov et al.'s GRU; "bn" the per-step recurrent BN of lnrepro.nn.rnn
(not in the paper; the statistics of a step also see the <pad> of shorter captions). The image
map is linear in every case, as theirs.

Init as Vendrov et al.: word embeddings U(-0.1, 0.1), orthogonal recurrent blocks, Xavier
uniform image map with zero bias.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from lnrepro.data.text import PAD_ID
from lnrepro.errors import ConfigError
from lnrepro.nn.norm import Norm
from lnrepro.nn.rnn import GRU

EMB_INIT = 0.1  # Vendrov et al.'s norm_weight: U(-0.1, 0.1)


class OrderEmbeddings(nn.Module):
    """Caption encoder (GRU with the norm switch) and linear image encoder (module docstring).

    Args:
        vocab_size: words incl. <pad>/<eos>/<unk> (from the data: `data.model_kwargs`).
        dim_word: word embedding size (Vendrov et al.: 300).
        dim: embedding size = GRU units (1024).
        dim_image: image feature size (4096 for VGG; the data checks its files against it).
        norm: ln | bn | none, for the GRU.
        use_abs: take the absolute value of both embeddings (Vendrov et al.'s order model: true).
        init: GRU init, "orthogonal" (Vendrov et al.) or "torch".
        t_max: BN only: time steps with their own statistics.
        vocab_hash: the training vocabulary's hash, checked when a checkpoint is loaded.
    """

    def __init__(
        self,
        vocab_size: int,
        dim_word: int = 300,
        dim: int = 1024,
        dim_image: int = 4096,
        norm: Norm | str = "ln",
        use_abs: bool = True,
        init: str = "orthogonal",
        t_max: int = 64,
        vocab_hash: str | None = None,
    ):
        super().__init__()
        if isinstance(vocab_size, bool) or not isinstance(vocab_size, int) or vocab_size < 4:
            raise ConfigError(f"model.vocab_size must be an integer >= 4, got {vocab_size!r}")
        self.use_abs, self.vocab_hash = bool(use_abs), vocab_hash
        self.embedding = nn.Embedding(vocab_size, dim_word, padding_idx=PAD_ID)
        self.encoder = GRU(dim_word, dim, 1, norm, t_max=t_max, init=init)
        self.image = nn.Linear(dim_image, dim)
        with torch.no_grad():
            self.embedding.weight.uniform_(-EMB_INIT, EMB_INIT)
            self.embedding.weight[PAD_ID].zero_()
            nn.init.xavier_uniform_(self.image.weight)
            self.image.bias.zero_()

    def _finish(self, x: torch.Tensor) -> torch.Tensor:
        x = F.normalize(x, dim=-1)
        return x.abs() if self.use_abs else x

    def encode_captions(self, ids: torch.Tensor) -> torch.Tensor:
        """(B, L) ids padded with <pad>, each ending with <eos> -> (B, dim): the state after
        <eos>, normalised. Padding after a caption does not change its embedding."""
        lengths = (ids != PAD_ID).sum(1).clamp(min=1)
        out, _ = self.encoder(self.embedding(ids.t()))  # (L, B, dim)
        return self._finish(out[lengths - 1, torch.arange(ids.shape[0], device=ids.device)])

    def encode_images(self, images: torch.Tensor) -> torch.Tensor:
        """(M, dim_image) features -> (M, dim)."""
        return self._finish(self.image(images))

    def forward(self, ids: torch.Tensor, images: torch.Tensor):
        """-> (caption embeddings (B, dim), image embeddings (M, dim))."""
        return self.encode_captions(ids), self.encode_images(images)

    def get_extra_state(self) -> dict:
        return {"vocab_hash": self.vocab_hash}

    def set_extra_state(self, state: dict) -> None:
        h = state.get("vocab_hash")
        if h and self.vocab_hash and h != self.vocab_hash:
            raise ConfigError(
                f"vocabulary mismatch: the checkpoint was trained on vocabulary "
                f"{h}, this run's captions give {self.vocab_hash}; resume with "
                "the files the run started with"
            )
