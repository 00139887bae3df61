"""The linear probe: what a code knows about the digit's identity.

A multinomial logistic regression fitted on the training split's codes
(standardised, L2-regularised, full-batch L-BFGS) and scored on the test split's.
A code that carries the class linearly scores high; raw pixels are the reference.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

L2 = 1e-3        # weight decay on the probe's weights (mean cross-entropy + L2/2 |W|^2); the bias is not decayed
# L-BFGS iterations. Measured on MNIST (probe_accuracy at 15 / 25 / 50 / 100 iterations): raw pixels 92.35 /
# 92.41 / 92.72 / 92.68 %, ReLU random features of 1156 dims 95.49 / 96.14 / 96.33 / 96.26 %. 50 are converged
# to a tenth of a point, so a difference between two codes is not the optimiser's; a 1156-d probe takes ~6 s.
MAX_ITER = 50
CHUNK = 4096     # rows per pass: each chunk's logits and gradient are computed while it is in cache


def standardise(train: torch.Tensor, test: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Both splits scaled by the training split's mean and deviation; constant features (dead units) stay 0."""
    mean = train.mean(0)
    std = train.std(0)
    std = torch.where(std > 1e-8, std, torch.ones_like(std))
    return (train - mean) / std, (test - mean) / std


@torch.no_grad()
def fit_logistic(x: torch.Tensor, y: torch.Tensor, classes: int, max_iter: int = MAX_ITER) -> torch.Tensor:
    """Weights (classes, features + 1) minimising mean cross-entropy + L2/2 |W|^2 (bias not decayed).

    The gradient is written out (softmax minus one-hot, times the inputs) and computed chunk by
    chunk, with no autograd graph over the whole split.
    """
    n, d = x.shape
    onehot = F.one_hot(y, classes).to(x.dtype)
    params = torch.zeros(classes, d + 1, dtype=x.dtype, requires_grad=True)

    def closure() -> torch.Tensor:
        weight, bias = params[:, :d], params[:, d]
        grad = torch.zeros_like(params)
        loss = 0.5 * L2 * weight.pow(2).sum()
        for xs, hot in zip(x.split(CHUNK), onehot.split(CHUNK)):
            logp = F.linear(xs, weight, bias).log_softmax(1)
            loss -= (logp * hot).sum() / n
            g = (logp.exp() - hot) / n
            grad[:, :d].addmm_(g.t(), xs)
            grad[:, d] += g.sum(0)
        grad[:, :d] += L2 * weight
        params.grad = grad
        return loss

    optimiser = torch.optim.LBFGS([params], lr=1, max_iter=max_iter, history_size=20, line_search_fn="strong_wolfe")
    optimiser.step(closure)
    return params.detach()


@torch.no_grad()
def probe_accuracy(
    train_codes: torch.Tensor, train_labels: torch.Tensor, test_codes: torch.Tensor, test_labels: torch.Tensor,
    classes: int = 10, max_iter: int = MAX_ITER,
) -> float:
    """Test accuracy of a logistic regression fitted on (train_codes, train_labels). Deterministic."""
    x, x_test = standardise(train_codes.flatten(1).float().cpu(), test_codes.flatten(1).float().cpu())
    params = fit_logistic(x, train_labels.cpu(), classes, max_iter)
    predicted = F.linear(x_test, params[:, :-1], params[:, -1]).argmax(1)
    return (predicted == test_labels.cpu()).double().mean().item()
