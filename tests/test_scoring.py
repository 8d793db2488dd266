"""SentEval scoring (lnrepro.eval.scoring) against its stated objective and direct computations.

The logistic regressions are checked by their optimality condition: at the returned weights the
gradient of the objective each problem states (mean loss over its examples + ||w||^2 / (2 C n),
intercept not penalised) vanishes. That pins the loss, the per-problem weighting and the L2
strength at once, for hard binary, hard multi-class and soft (SICK) labels.
"""

import pytest
import torch
import torch.nn.functional as F
from scipy import stats

from lnrepro.errors import ConfigError
from lnrepro.eval.scoring import (_folds, _predict, _ranks, _standardise, fit_logreg, pearson,
                                  sick_target, spearman)

N, D = 60, 4


def problem(n_classes, soft=False, seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(N, D, generator=g, dtype=torch.float64)
    if soft:
        y = torch.softmax(x @ torch.randn(D, n_classes, generator=g, dtype=torch.float64), -1)
    else:
        y = (x @ torch.randn(D, generator=g, dtype=torch.float64) * 2
             + torch.randn(N, generator=g, dtype=torch.float64)).argsort().argsort()
        y = (y * n_classes // N).long()  # noisy labels: the optimum is finite
    masks = torch.zeros(3, N, dtype=torch.bool)
    masks[0, :40], masks[1, 20:], masks[2, ::2] = True, True, True
    cs = torch.tensor([0.1, 1.0, 30.0], dtype=torch.float64)
    return x, y, masks, cs


def objective(x, y, w, b, mask, c, sigmoid):
    logits = x[mask] @ w + b
    if sigmoid:
        loss = F.binary_cross_entropy_with_logits(logits[:, 0], y[mask].double())
    elif y.dim() == 2:
        loss = -(F.log_softmax(logits, -1) * y[mask]).sum(-1).mean()
    else:
        loss = F.cross_entropy(logits, y[mask])
    return loss + w.pow(2).sum() / (2 * c * mask.sum())


@pytest.mark.parametrize("n_classes,soft", [(2, False), (3, False), (5, True), (2, True)])
def test_fit_logreg_solves_each_problem(n_classes, soft):
    x, y, masks, cs = problem(n_classes, soft)
    w, b = fit_logreg(x, y, masks, cs, n_classes, dtype=torch.float64)
    sigmoid = n_classes == 2 and not soft
    assert w.shape == (3, D, 1 if sigmoid else n_classes) and w.dtype == torch.float64
    for p in range(3):
        wp, bp = w[p].clone().requires_grad_(), b[p].clone().requires_grad_()
        grads = torch.autograd.grad(objective(x, y, wp, bp, masks[p], cs[p], sigmoid), [wp, bp])
        assert max(g.abs().max().item() for g in grads) < 1e-5, p
    assert not torch.allclose(w[0], w[2], atol=1e-3)  # the three problems really differ


def test_fit_logreg_defaults_to_float32():
    x, y, masks, cs = problem(2)
    w, b = fit_logreg(x, y, masks, cs, 2)
    assert w.dtype == b.dtype == torch.float32


def test_predict_thresholds_the_sigmoid_at_zero():
    x = torch.tensor([[1.0], [0.25], [0.0], [-0.5]])
    w = torch.ones(1, 1, 1)
    assert _predict(x, w, torch.zeros(1, 1)).tolist() == [[1, 1, 0, 0]]  # logit 0: class 0
    three = torch.tensor([[[0.0, 1.0, -1.0]]])
    assert _predict(x, three, torch.zeros(1, 3)).tolist() == [[1, 1, 0, 2]]


def test_standardise_with_the_reference_statistics():
    g = torch.Generator().manual_seed(0)
    a = torch.randn(50, 3, generator=g) * torch.tensor([1e-3, 1.0, 50.0]) + 7
    b = torch.randn(20, 3, generator=g)
    sa, sb = _standardise(a, b, ref=a)
    torch.testing.assert_close(sa.mean(0), torch.zeros(3, dtype=torch.float64), atol=1e-9, rtol=0)
    torch.testing.assert_close(sa.std(0), torch.ones(3, dtype=torch.float64))
    torch.testing.assert_close(sb, (b.double() - a.double().mean(0)) / a.double().std(0))
    both = _standardise(a, b)  # no reference: the statistics of all of them
    torch.testing.assert_close(torch.cat(both).mean(0), torch.zeros(3, dtype=torch.float64),
                               atol=1e-9, rtol=0)


def test_folds_are_balanced_fixed_and_need_one_example_each():
    f = _folds(23, 5, seed=3)
    assert sorted(torch.bincount(f).tolist()) == [4, 4, 5, 5, 5]
    assert torch.equal(f, _folds(23, 5, seed=3)) and not torch.equal(f, _folds(23, 5, seed=4))
    assert sorted(_folds(5, 5).tolist()) == [0, 1, 2, 3, 4]
    with pytest.raises(ConfigError, match="5 folds need at least 5 examples, got 4"):
        _folds(4, 5)


def test_sick_target_clamps_scores_outside_1_to_5():
    p = sick_target(torch.tensor([0.5, 5.5, 3.25]))
    assert p.tolist() == [[1, 0, 0, 0, 0], [0, 0, 0, 0, 1], [0, 0, 0.75, 0.25, 0]]


def test_correlations_match_scipy():
    g = torch.Generator().manual_seed(0)
    a = torch.randint(0, 6, (40,), generator=g).double()  # many ties
    b = a + torch.randn(40, generator=g, dtype=torch.float64)
    assert spearman(a, b) == pytest.approx(stats.spearmanr(a, b).statistic, abs=1e-12)
    assert pearson(a, b) == pytest.approx(stats.pearsonr(a, b).statistic, abs=1e-12)
    assert pearson(1e-4 * a, 1e-4 * b) == pytest.approx(pearson(a, b), abs=1e-12)  # scale-free
    torch.testing.assert_close(_ranks(torch.tensor([3.0, 1.0, 3.0, 2.0])),
                               torch.tensor([3.5, 1.0, 3.5, 2.0], dtype=torch.float64))
