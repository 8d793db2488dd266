"""LSTM language model with the norm switch (Ha et al. 2017 and Cooijmans et al. 2017 at character level; Zaremba et al. 2014 at word level)."""

from __future__ import annotations

import torch
from torch import nn

from lnrepro.errors import ConfigError
from lnrepro.nn.norm import Norm
from lnrepro.nn.rnn import DEFAULT_T_MAX, LSTM

EMB_INIT = 0.1  # embedding ~ U(-0.1, 0.1) (Zaremba et al. use 0.05-0.1); torch's N(0, 1) is large


class LSTMLM(nn.Module):
    """embedding -> dropout -> LSTM (norm=ln|bn|none) -> dropout -> linear decoder.

    Dropout on the non-recurrent connections only (Zaremba et al.; HyperNetworks' input and
    output dropout); between stacked layers the LSTM applies the same rate. norm "ln" is the
    paper's LN-LSTM (supplementary Eq. 20-22), "bn" recurrent BN with per-time-step statistics
    (Cooijmans et al.), "none" the plain LSTM; the step index of the BN statistics is the position
    within the segment (each segment starts at t0 = 0, as Cooijmans et al.).

    The model records the vocabulary it was built for (size and hash) in its state_dict, so that
    loading a checkpoint trained on other data is one clear ConfigError instead of a shape error
    or, worse, a silent mismatch of symbols.

    Args:
        vocab_size: number of symbols; the data module supplies it (`data.model_kwargs`).
        emb_dim: embedding size (the LSTM's input size).
        hidden_size, num_layers, ln_cell, t_max, init: see `lnrepro.nn.rnn.LSTM`.
        dropout: rate on the embedding output, between layers and before the decoder.
        tie_weights: share the embedding matrix with the decoder (needs emb_dim == hidden_size).
        vocab_hash: hash of the vocabulary (`lnrepro.data.ptb.vocab_hash`), checked on load.
    """

    def __init__(
        self,
        vocab_size: int,
        emb_dim: int,
        hidden_size: int,
        num_layers: int = 1,
        norm: Norm | str = "ln",
        dropout: float = 0.0,
        ln_cell: bool = True,
        tie_weights: bool = False,
        t_max: int = DEFAULT_T_MAX,
        init: str = "torch",
        vocab_hash: str | None = None,
    ):
        super().__init__()
        if isinstance(vocab_size, bool) or not isinstance(vocab_size, int) or vocab_size < 1:
            raise ConfigError(f"model.vocab_size must be a positive integer, got {vocab_size!r}")
        if emb_dim < 1:
            raise ConfigError(f"model.emb_dim must be >= 1, got {emb_dim}")
        if tie_weights and emb_dim != hidden_size:
            raise ConfigError(
                f"model.tie_weights needs model.emb_dim == model.hidden_size, got {emb_dim} and "
                f"{hidden_size}"
            )
        self.vocab_size, self.vocab_hash = vocab_size, vocab_hash
        self.rnn = LSTM(emb_dim, hidden_size, num_layers, norm, ln_cell, dropout, t_max, init)
        self.embedding = nn.Embedding(vocab_size, emb_dim)
        nn.init.uniform_(self.embedding.weight, -EMB_INIT, EMB_INIT)
        self.drop = nn.Dropout(dropout)
        self.decoder = nn.Linear(hidden_size, vocab_size)
        if tie_weights:
            self.decoder.weight = self.embedding.weight

    def forward(self, x: torch.Tensor, state=None):
        """x (T, B) token ids, state (h, c) each (num_layers, B, H) or None (zeros)
        -> logits (T, B, V), the final (h, c)."""
        e = self.drop(self.embedding(x))  # (T, B, E)
        out, state = self.rnn(e, state)  # (T, B, H)
        return self.decoder(self.drop(out)), state  # (T, B, V)

    def get_extra_state(self) -> dict:
        return {"vocab_size": self.vocab_size, "vocab_hash": self.vocab_hash}

    def set_extra_state(self, state: dict) -> None:
        # runs before the parameters of the submodules load, so before any shape error
        size, h = state.get("vocab_size"), state.get("vocab_hash")
        if size != self.vocab_size or (h and self.vocab_hash and h != self.vocab_hash):
            raise ConfigError(
                f"vocabulary mismatch on resume: the checkpoint was trained on {size} symbols "
                f"(vocabulary hash {h}), the data now gives {self.vocab_size} (hash "
                f"{self.vocab_hash}); resume with the data files the run started with"
            )
