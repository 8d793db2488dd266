"""The unidirectional attentive reader (Hermann et al. 2015, Sec. 4; the paper's Sec. 6.2) as in
Cooijmans et al.'s Attentive_reader code (their App. C), with the norm switch in its LSTMs.

    e = E[x]                          shared word embedding (document and query)
    y_t = LSTM_d(e_doc)_t             document states (T, B, H)
    u = LSTM_q(e_query)_last          the query state after its last token
    m_t = tanh(W_ym y_t + W_um u [+ (y_t W_b) . (u W_b)])       (`bilinear`: --use_dq_sims)
    s = softmax_t(w_ms^T m_t)          over the live document steps only
    r = sum_t s_t y_t
    g = tanh(W_rg r + W_ug u [+ W_dg mean_t y_t])                (`desc_skip`: --use_desc_skip_c_g)
    p(a | d, q) = softmax over the example's candidate entities of (W_out g + b)

norm "ln": both LSTMs are LN-LSTMs (supplementary Eq. 20-22), "only within the LSTM" as the
paper; "bn": recurrent BN with per-step statistics (Cooijmans et al.), over the live cases of a
padded batch (lnrepro.nn.rnn.SeqBatchNorm, `bn_min_live`); "none": the plain LSTM. The attention
and output layers are never normalised (the paper's LN model; "BN-everywhere" is not built).
Both LSTMs start from a learned initial h0 (Cooijmans et al.: --learn_h0 1; c0 = 0). Dropout
(their --use_dropout, rate 0.5) on the embeddings and on g.
"""

from __future__ import annotations

import torch
from torch import nn

from lnrepro.errors import ConfigError
from lnrepro.nn.norm import Norm
from lnrepro.nn.rnn import DEFAULT_T_MAX, LSTM, MIN_LIVE

EMB_INIT = 0.1  # embeddings ~ U(-0.1, 0.1), as the language models of this project


class Encoder(nn.Module):
    """An LSTM over a padded (T, B) batch from a learned initial h0 (c0 = 0, as their
    --learn_h0)."""

    def __init__(self, emb_dim: int, hidden: int, norm, t_max: int, init: str, min_live: int):
        super().__init__()
        self.rnn = LSTM(emb_dim, hidden, 1, norm, True, 0.0, t_max, init)
        self.h0 = nn.Parameter(torch.zeros(1, 1, hidden))
        self.min_live = min_live

    def forward(self, e: torch.Tensor, mask: torch.Tensor):
        """e (T, B, E), mask (T, B) -> states (T, B, H), final h after each case's last token."""
        b = e.shape[1]
        h0 = self.h0.expand(1, b, -1)
        state = (h0, torch.zeros_like(h0))
        out, (h, _) = self.rnn(e, state, mask=mask, min_live=self.min_live)
        return out, h[0]


class AttentiveReader(nn.Module):
    """Hermann et al.'s attentive reader; `forward(batch) -> logits (B, n_entities)` with
    -inf outside each example's candidates.

    Args:
        vocab_size: words + specials + entity tokens (the data supplies it).
        n_entities: entity classes @entity0..; the output vocabulary.
        entity_offset: token id of @entity0 (entity k is token entity_offset + k).
        emb_dim, hidden_size: embedding and LSTM sizes (Cooijmans et al.: 240 and 240).
        bilinear: the extra attention term (y W_b).(u W_b) (their --use_dq_sims 1).
        desc_skip: the mean document state into g (their --use_desc_skip_c_g 1).
        dropout: on the embeddings and on g (their --use_dropout, rate 0.5).
        bn_min_live: BN: fewest live cases a step's training statistics may come from.
        t_max: BN: steps with their own statistics (the longest document).
        tied: the output weight of entity k is the input embedding of @entity{k} (through one
            shared H -> emb_dim projection) instead of a row of its own.
    """

    def __init__(
        self,
        vocab_size: int,
        n_entities: int,
        entity_offset: int,
        emb_dim: int,
        hidden_size: int,
        norm: Norm | str = "ln",
        bilinear: bool = True,
        desc_skip: bool = True,
        dropout: float = 0.0,
        bn_min_live: int = MIN_LIVE,
        t_max: int = DEFAULT_T_MAX,
        init: str = "orthogonal",
        tied: bool = False,
        vocab_hash: str | None = None,
    ):
        super().__init__()
        for name, v in (
            ("vocab_size", vocab_size),
            ("n_entities", n_entities),
            ("emb_dim", emb_dim),
            ("hidden_size", hidden_size),
        ):
            if isinstance(v, bool) or not isinstance(v, int) or v < 1:
                raise ConfigError(f"model.{name} must be a positive integer, got {v!r}")
        if not 0.0 <= dropout < 1.0:
            raise ConfigError(f"model.dropout must be in [0, 1), got {dropout}")
        self.vocab_size, self.vocab_hash, self.n_entities = vocab_size, vocab_hash, n_entities
        self.entity_offset = entity_offset
        H = hidden_size
        self.embedding = nn.Embedding(vocab_size, emb_dim)
        nn.init.uniform_(self.embedding.weight, -EMB_INIT, EMB_INIT)
        self.drop = nn.Dropout(dropout)
        self.doc_rnn = Encoder(emb_dim, H, norm, t_max, init, bn_min_live)
        self.query_rnn = Encoder(emb_dim, H, norm, t_max, init, bn_min_live)
        self.att_doc = nn.Linear(H, H)  # W_ym (with bias)
        self.att_query = nn.Linear(H, H, bias=False)  # W_um
        self.att_bilinear = nn.Linear(H, H, bias=False) if bilinear else None
        self.att_score = nn.Linear(H, 1, bias=False)  # w_ms
        self.out_ctx = nn.Linear(H, H, bias=False)  # W_rg
        self.out_query = nn.Linear(H, H)  # W_ug
        self.out_mean = nn.Linear(H, H, bias=False) if desc_skip else None
        self.tied = tied
        if tied:  # entity k's output vector is its input embedding, read through one projection
            self.decoder = nn.Linear(H, emb_dim, bias=False)
            self.decoder_bias = nn.Parameter(torch.zeros(n_entities))
        else:
            self.decoder = nn.Linear(H, n_entities)

    def attend(self, y: torch.Tensor, u: torch.Tensor, mask: torch.Tensor):
        """Attention weights s (T, B) over the live steps and the read-out r (B, H)."""
        m = self.att_doc(y) + self.att_query(u)
        if self.att_bilinear is not None:
            m = m + (self.att_bilinear(y) * self.att_bilinear(u)).sum(-1, keepdim=True)
        scores = self.att_score(torch.tanh(m)).squeeze(-1).masked_fill(~mask, float("-inf"))
        s = torch.softmax(scores, 0)
        return s, (s.unsqueeze(-1) * y).sum(0)

    def forward(self, batch) -> torch.Tensor:
        y, _ = self.doc_rnn(self.drop(self.embedding(batch.doc)), batch.doc_mask)
        _, u = self.query_rnn(self.drop(self.embedding(batch.query)), batch.query_mask)
        _, r = self.attend(y, u, batch.doc_mask)
        g = self.out_ctx(r) + self.out_query(u)
        if self.out_mean is not None:
            live = batch.doc_mask.unsqueeze(-1).to(y.dtype)
            g = g + self.out_mean((y * live).sum(0) / live.sum(0))
        logits = self.decoder(self.drop(torch.tanh(g)))
        if self.tied:
            ents = self.embedding.weight[self.entity_offset : self.entity_offset + self.n_entities]
            logits = logits @ ents.t() + self.decoder_bias
        return restrict(logits, batch.candidates)

    def get_extra_state(self) -> dict:
        return {
            "vocab_size": self.vocab_size,
            "vocab_hash": self.vocab_hash,
            "n_entities": self.n_entities,
        }

    def set_extra_state(self, state: dict) -> None:
        mine = self.get_extra_state()
        h = state.get("vocab_hash")
        if (state.get("vocab_size"), state.get("n_entities")) != (
            self.vocab_size,
            self.n_entities,
        ) or (h and self.vocab_hash and h != self.vocab_hash):
            raise ConfigError(
                f"vocabulary mismatch on resume: the checkpoint was trained on "
                f"{state}, the data now gives {mine}; resume with the data the "
                "run started with"
            )


def restrict(logits: torch.Tensor, candidates: torch.Tensor) -> torch.Tensor:
    """The softmax over the entity vocabulary restricted to each example's candidates
    (Hermann et al. 2015, Sec. 4): -inf outside them."""
    if candidates.shape != logits.shape:
        raise ValueError(f"candidates {tuple(candidates.shape)} vs logits {tuple(logits.shape)}")
    return logits.masked_fill(~candidates, float("-inf"))
