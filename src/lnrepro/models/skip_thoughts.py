"""Uni-skip skip-thought model (Kiros et al. 2015; Ba et al. 2016, Sec. 6.3) with the norm switch.

    encoder:  h = GRU_enc(emb(s_i)) at the last token (<eos>) of s_i          (the sentence vector)
    decoders: GRU_prev and GRU_next, teacher-forced on s_{i-1} and s_{i+1}:
              input at step t = [emb(w_{t-1}); h]  (w_{-1} = <eos>), initial state 0,
              logits = V d_t, target w_t (the sentence's words, then <eos>).

Conditioning: the encoding enters every step of each decoder through its gates, as in Kiros et
al. (Eq. 5-7: C_r h_i, C_z h_i and C h_i added to the reset gate, update gate and candidate;
their code `gru_cond_simple_layer` adds dot(ctx, Wc*) to the input projections). Concatenating
h to the decoder's input is exactly that: W_ih [e; h] = W_e e + C h, rows [r; z; n]. It reuses
the repository's GRU (lnrepro.nn.rnn, supplementary Eq. 23-28) unchanged, so with norm=ln the
context term sits inside the input-side LN of the gates, N_x(W e + C h), as in the authors' lngru
code where the conditioning is part of the input projection. An initial-state conditioning would
let the decoders forget the encoding over 30 steps; the gate conditioning is the original's.

Shared parameters (Kiros et al.): one word embedding for the encoder and both decoders, one
output matrix V (softmax) for both decoders; each GRU has its own weights.

norm: "ln" is the paper's LN-GRU in the encoder and the decoders; "none" the plain GRU; "bn" the
recurrent BN of lnrepro.nn.rnn with per-time-step statistics (not in the paper; the batch
statistics of a step also see the <pad> positions of shorter sentences, so it is a rough
baseline only).

The model records its vocabulary (words, size, hash) in its state_dict (extra state), so a
checkpoint is enough to encode new sentences: `load_encoder(ckpt).encode(sentences)`.
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from lnrepro.data.text import EOS_ID, PAD_ID, UNK_ID, tokenize
from lnrepro.errors import ConfigError, DataError
from lnrepro.nn.norm import Norm, NormSpec
from lnrepro.nn.rnn import GRU

EMB_INIT = 0.1  # U(-0.1, 0.1), Kiros et al.'s norm_weight scale


class SkipThoughts(nn.Module):
    """Uni-skip encoder + previous/next decoders (see the module docstring).

    Args:
        vocab_size: words incl. <pad>/<eos>/<unk> (from the data: `data.model_kwargs`).
        emb_dim: word embedding size (Kiros et al.: 620).
        hidden_size: encoder units = sentence vector size (2400).
        decoder_size: decoder units (null: hidden_size, as Kiros et al.).
        norm: ln | bn | none (all three GRUs).
        init: GRU init, "orthogonal" (Kiros et al.'s ortho_weight for the recurrent blocks) or
            "torch".
        t_max: BN only: time steps with their own statistics (max_len + 1 covers a sentence).
        vocab, vocab_hash: the words (for `encode`) and their hash, checked on resume.
    """

    def __init__(
        self,
        vocab_size: int,
        emb_dim: int = 620,
        hidden_size: int = 2400,
        decoder_size: int | None = None,
        norm: Norm | str = "ln",
        init: str = "orthogonal",
        t_max: int = 32,
        vocab: list[str] | None = None,
        vocab_hash: str | None = None,
    ):
        super().__init__()
        if isinstance(vocab_size, bool) or not isinstance(vocab_size, int) or vocab_size < 4:
            raise ConfigError(f"model.vocab_size must be an integer >= 4, got {vocab_size!r}")
        if emb_dim < 1 or hidden_size < 1:
            raise ConfigError(
                f"model.emb_dim and model.hidden_size must be >= 1, got {emb_dim}, {hidden_size}"
            )
        dec = decoder_size or hidden_size
        self.vocab_size, self.vocab_hash = vocab_size, vocab_hash
        self.vocab = list(vocab) if vocab is not None else None
        self._stoi = None
        self.hidden_size = hidden_size
        self.embedding = nn.Embedding(vocab_size, emb_dim, padding_idx=PAD_ID)
        nn.init.uniform_(self.embedding.weight, -EMB_INIT, EMB_INIT)
        with torch.no_grad():
            self.embedding.weight[PAD_ID].zero_()
        self.encoder = GRU(emb_dim, hidden_size, 1, norm, t_max=t_max, init=init)
        self.dec_prev = GRU(emb_dim + hidden_size, dec, 1, norm, t_max=t_max, init=init)
        self.dec_next = GRU(emb_dim + hidden_size, dec, 1, norm, t_max=t_max, init=init)
        self.out = nn.Linear(dec, vocab_size)

    # ---- encoder ----------------------------------------------------------------------------
    def encode_ids(self, ids: torch.Tensor) -> torch.Tensor:
        """(B, L) ids padded with <pad> (each sentence ends with <eos>) -> (B, H): the state
        after each sentence's last token."""
        lengths = (ids != PAD_ID).sum(1).clamp(min=1)
        out, _ = self.encoder(self.embedding(ids.t()))  # (L, B, H)
        return out[lengths - 1, torch.arange(ids.shape[0], device=ids.device)]

    # ---- decoders ---------------------------------------------------------------------------
    def decode(self, which: str, h: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """Teacher-forced logits (L, B, V) for `target` (B, L): step t reads w_{t-1} (<eos> at
        t = 0) and the encoding h, and predicts target[:, t]."""
        rnn = self.dec_prev if which == "prev" else self.dec_next
        inp = torch.cat([target.new_full((target.shape[0], 1), EOS_ID), target[:, :-1]], 1)
        e = self.embedding(inp.t())  # (L, B, E)
        x = torch.cat([e, h.unsqueeze(0).expand(e.shape[0], -1, -1)], -1)
        d, _ = rnn(x)
        return self.out(d)

    def forward(self, prev: torch.Tensor, cur: torch.Tensor, nxt: torch.Tensor):
        """-> (logits for prev (Lp, B, V), logits for next (Ln, B, V))."""
        h = self.encode_ids(cur)
        return self.decode("prev", h, prev), self.decode("next", h, nxt)

    # ---- raw sentences ----------------------------------------------------------------------
    def ids_of(self, sentence: str, max_len: int | None = None) -> list[int]:
        if self.vocab is None:
            raise ConfigError("this model has no vocabulary (built without data.model_kwargs)")
        if self._stoi is None:
            self._stoi = {w: i for i, w in enumerate(self.vocab)}
        toks = tokenize(sentence)
        if max_len:
            toks = toks[:max_len]
        return [self._stoi.get(w, UNK_ID) for w in toks] + [EOS_ID]

    @torch.no_grad()
    def encode(
        self, sentences: list[str], batch_size: int = 256, max_len: int | None = None
    ) -> torch.Tensor:
        """Sentence vectors (N, H) of raw sentences, in their order; batched and sorted by
        length (so little padding is read). Evaluation mode for the call (BN: population
        statistics); the training mode is restored after."""
        was = self.training
        self.eval()
        device = self.embedding.weight.device
        try:
            ids = [self.ids_of(s, max_len) for s in sentences]
            order = sorted(range(len(ids)), key=lambda i: len(ids[i]))
            out = torch.empty(len(ids), self.hidden_size)
            for a in range(0, len(order), batch_size):
                chunk = order[a : a + batch_size]
                n = max(len(ids[i]) for i in chunk)
                x = torch.full((len(chunk), n), PAD_ID, dtype=torch.long)
                for r, i in enumerate(chunk):
                    x[r, : len(ids[i])] = torch.tensor(ids[i])
                out[torch.tensor(chunk)] = self.encode_ids(x.to(device)).float().cpu()
            return out
        finally:
            self.train(was)

    # ---- checkpoint metadata ----------------------------------------------------------------
    def get_extra_state(self) -> dict:
        return {"vocab_size": self.vocab_size, "vocab_hash": self.vocab_hash, "vocab": self.vocab}

    def set_extra_state(self, state: dict) -> None:
        size, h = state.get("vocab_size"), state.get("vocab_hash")
        if size != self.vocab_size or (h and self.vocab_hash and h != self.vocab_hash):
            raise ConfigError(
                f"vocabulary mismatch: the checkpoint was trained on {size} words (hash {h}), "
                f"this model has {self.vocab_size} (hash {self.vocab_hash}); resume with the "
                "corpus and settings the run started with"
            )
        if state.get("vocab") is not None:
            self.vocab, self._stoi = list(state["vocab"]), None


def load_encoder(ckpt: str | Path | dict, device: str | torch.device = "cpu") -> SkipThoughts:
    """The SkipThoughts model of a training checkpoint (`<run>/checkpoints/last.pt`), in eval
    mode: `load_encoder(path).encode(["a sentence .", ...]) -> (N, H)`."""
    if not isinstance(ckpt, dict):
        try:
            ckpt = torch.load(ckpt, map_location="cpu", weights_only=True)
        except Exception as e:  # noqa: BLE001
            raise DataError(f"checkpoint {ckpt} cannot be read ({type(e).__name__}: {e})") from None
    cfg = ckpt.get("config") or {}
    mcfg = dict(cfg.get("model") or {})
    if not str(mcfg.get("_target_", "")).endswith("SkipThoughts"):
        raise ConfigError(f"not a skip-thoughts checkpoint (model {mcfg.get('_target_')!r})")
    extra = ckpt["model"].get("_extra_state") or {}
    norm = NormSpec.from_cfg(
        cfg.get("norm") or {"kind": "ln"}, (cfg.get("data") or {}).get("batch_size")
    )
    kwargs = {k: v for k, v in mcfg.items() if k != "_target_"}
    kwargs.update(
        vocab_size=extra["vocab_size"], vocab_hash=extra.get("vocab_hash"), vocab=extra.get("vocab")
    )
    model = SkipThoughts(norm=norm, **kwargs)
    model.load_state_dict(ckpt["model"])
    return model.to(device).eval()
