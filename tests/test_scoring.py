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
from lnrepro.eval.scoring import (
    _folds,
    _predict,
    _ranks,
    _standardise,
    fit_logreg,
    pearson,
    sick_target,
    spearman,
)

N, D = 60, 4


def problem(n_classes, soft=False, seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(N, D, generator=g, dtype=torch.float64)
    if soft:
        y = torch.softmax(x @ torch.randn(D, n_classes, generator=g, dtype=torch.float64), -1)
    else:
        y = (
            (
                x @ torch.randn(D, generator=g, dtype=torch.float64) * 2
                + torch.randn(N, generator=g, dtype=torch.float64)
            )
            .argsort()
            .argsort()
        )
        y = (y * n_classes // N).long()  # noisy labels: the optimum is finite
    masks = torch.zeros(4, N, dtype=torch.bool)
    masks[0, :40], masks[1, 20:], masks[2, ::2], masks[3, 7] = True, True, True, True
    cs = torch.tensor([0.1, 1.0, 30.0, 2.0], dtype=torch.float64)  # the last: one example
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
    assert w.shape == (4, D, 1 if sigmoid else n_classes) and w.dtype == b.dtype == torch.float64
    for p in range(4):
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
    torch.testing.assert_close(
        torch.cat(both).mean(0), torch.zeros(3, dtype=torch.float64), atol=1e-9, rtol=0
    )


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
    torch.testing.assert_close(
        _ranks(torch.tensor([3.0, 1.0, 3.0, 2.0])),
        torch.tensor([3.5, 1.0, 3.5, 2.0], dtype=torch.float64),
    )


def _separable_and_noise(seed=0):
    """Two problems with known answers: separable classes (the weakest regularisation wins)
    and labels independent of 30 features, 70 % of one class (the strongest wins: predict the
    majority; a weakly regularised fit overfits the noise)."""
    g = torch.Generator().manual_seed(seed)
    y_sep = torch.arange(80) % 2
    x_sep = torch.randn(80, 3, generator=g, dtype=torch.float64) + 3.0 * y_sep[:, None]
    x_noise = torch.randn(80, 30, generator=g, dtype=torch.float64)
    y_noise = (torch.arange(80) % 10 < 7).long()
    return (x_sep, y_sep), (x_noise, y_noise)


def test_choose_c_picks_the_c_that_validates_best():
    from lnrepro.eval.scoring import choose_c

    (xs, ys), (xn, yn) = _separable_and_noise()
    within = torch.ones(2, 80, dtype=torch.bool)
    within[1, :10] = False  # a second training set: C is chosen for each one
    assert choose_c(xs, ys, within, 3, [1e-4, 100.0], 2, 100).tolist() == [100.0, 100.0]
    assert choose_c(xn, yn, within, 3, [1e-4, 100.0], 2, 100).tolist() == [1e-4, 1e-4]


def test_cv_accuracy_reports_the_outer_folds_with_the_chosen_c():
    from lnrepro.eval.scoring import cv_accuracy

    (xs, ys), (xn, yn) = _separable_and_noise()
    noise = cv_accuracy(xn, yn, folds=4, inner_folds=3, cs=[1e-4, 100.0], max_iter=100)
    assert noise == {"acc": 70.0, "C": [1e-4] * 4}  # the majority class, on every outer fold
    sep = cv_accuracy(xs, ys, folds=4, inner_folds=3, cs=[1e-4, 100.0], max_iter=100)
    assert sep["C"] == [100.0] * 4 and sep["acc"] > 95.0


def test_cv_accuracy_folds_follow_the_seed():
    """The outer folds are a fixed permutation drawn from `seed` (default 0): the same seed gives
    the same number, another seed other folds."""
    from lnrepro.eval.scoring import cv_accuracy

    g = torch.Generator().manual_seed(2)
    y = torch.arange(40) % 2
    x = torch.randn(40, 3, generator=g, dtype=torch.float64) + 1.2 * y[:, None]  # overlapping
    opts = {"folds": 4, "inner_folds": 2, "cs": [1.0], "max_iter": 50}
    default = cv_accuracy(x, y, **opts)
    assert default == cv_accuracy(x, y, seed=0, **opts)
    assert any(cv_accuracy(x, y, seed=s, **opts)["acc"] != default["acc"] for s in (1, 2, 3))


def test_cv_accuracy_fits_every_class():
    """Three classes get a softmax over three classes (a sigmoid would never predict class 2),
    within the given L-BFGS iterations."""
    from lnrepro.eval.scoring import cv_accuracy

    g = torch.Generator().manual_seed(0)
    y = torch.arange(60) % 3
    x = torch.randn(60, 2, generator=g, dtype=torch.float64) * 0.3 + torch.eye(3)[y, :2] * 4
    assert cv_accuracy(x, y, folds=3, inner_folds=2, cs=[100.0], max_iter=2)["acc"] > 90.0
