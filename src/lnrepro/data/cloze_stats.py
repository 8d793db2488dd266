"""Statistics and sanity floors of a cloze corpus (the reader's data, lnrepro.data.cloze).

Floors on a split, as accuracies (a model that does not beat the highest by a margin has not
learned to read):
  * random: a uniformly random candidate (expected accuracy: the mean of 1 / #candidates);
  * frequent: the candidate mentioned most often in the document (ties: the one mentioned
    first);
  * recent: the candidate mentioned last in the document.
And one reference heuristic that is not a floor: frequent_not_in_query, the most frequent
candidate that the query does not name (when the query names them all: the most frequent).
"""

from __future__ import annotations

import torch

from lnrepro.data.cloze import ENTITY0, Split


def _entity_counts(flat: torch.Tensor, off: torch.Tensor, n: int, n_entities: int):
    """(N, n_entities) mention counts and (N, n_entities) first / last positions (-1: none)."""
    row = torch.repeat_interleave(torch.arange(n), off.diff())
    pos = torch.arange(len(flat)) - off[row]
    ent = flat - ENTITY0
    is_ent = (ent >= 0) & (ent < n_entities)
    row, pos, ent = row[is_ent], pos[is_ent], ent[is_ent]
    counts = torch.zeros(n, n_entities, dtype=torch.long)
    counts.index_put_((row, ent), torch.ones_like(ent), accumulate=True)
    big = torch.iinfo(torch.long).max
    first = torch.full((n * n_entities,), big).scatter_reduce(
        0, row * n_entities + ent, pos, "amin"
    )
    last = torch.full((n * n_entities,), -1).scatter_reduce(0, row * n_entities + ent, pos, "amax")
    return counts, first.view(n, n_entities), last.view(n, n_entities)


def floors(split: Split, n_entities: int) -> dict[str, float]:
    """The accuracies of the module docstring's floors and heuristic on one split."""
    s = split.to("cpu")
    n = len(s)
    counts, first, last = _entity_counts(s.doc, s.doc_off, n, n_entities)
    in_query = _entity_counts(s.query, s.query_off, n, n_entities)[0] > 0
    cands, ans = s.candidates, s.answer

    def most_frequent(allowed: torch.Tensor) -> torch.Tensor:
        # more mentions first, then the earlier first mention: count * L - first position
        L = int(s.doc_len.max()) + 1
        score = counts * L - first.clamp(max=L - 1)
        return score.masked_fill(~allowed, torch.iinfo(torch.long).min).argmax(1)

    not_q = cands & ~in_query
    not_q = torch.where(not_q.any(1, keepdim=True), not_q, cands)
    return {
        "random": float((1.0 / cands.sum(1).double()).mean()),
        "frequent": float((most_frequent(cands) == ans).double().mean()),
        "recent": float((last.masked_fill(~cands, -1).argmax(1) == ans).double().mean()),
        "frequent_not_in_query": float((most_frequent(not_q) == ans).double().mean()),
    }


def statistics(split: Split) -> dict[str, float]:
    """Questions, mean / median / max document and query length (tokens), mean candidates."""
    s = split.to("cpu")
    d, q, c = s.doc_len.double(), s.query_len.double(), s.candidates.sum(1).double()
    return {
        "questions": len(s),
        "doc_mean": float(d.mean()),
        "doc_median": float(d.median()),
        "doc_max": int(d.max()),
        "query_mean": float(q.mean()),
        "query_max": int(q.max()),
        "candidates_mean": float(c.mean()),
        "candidates_max": int(c.max()),
    }
