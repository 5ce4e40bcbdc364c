r"""The default compression networks of the IMNN and the rule that picks one.

* :class:`ElementwiseSum` (``architecture='deepsets'``): one small network :math:`g`
  shared by every data point, summed, :math:`t = W \sum_i g(x_i) / \sqrt{N} + c`. For
  independent, identically distributed data points the score -- the optimal summary at
  the fiducial point -- is such a sum, :math:`\sum_i \partial_\theta \ln p(x_i|\theta)`,
  so the network only has to learn a function of one variable, whatever the number of
  data points (Zaheer et al., "Deep sets", 2017).
* the MLP of ``hidden_layer_sizes`` on all features (``architecture='mlp'``).

:func:`looks_iid` decides between them from fiducial simulations (``'auto'``).
"""

import math

import numpy as np
import torch
from scipy.stats import rankdata
from torch import nn


_SLOPES = (0.3, 30.0)


class ElementwiseSum(nn.Module):
    r"""Summaries :math:`t = \sum_{i=1}^N g(x_i)/\sqrt N` of N scalar data points.

    :math:`g` is a small network of one variable: one hidden layer of ``hidden[0]``
    units :math:`\phi(s_j e^{a_j}(x - c_j))` (half :math:`\tanh`, half SiLU: steps and
    ramps, both smooth; :math:`s_j = \pm 1`), slopes :math:`e^{a_j}` drawn
    log-uniformly in [0.3, 30] and break points :math:`c_j` drawn from the
    distribution of the data (``quantiles``; else uniformly in :math:`[-3, 3]`, the
    inputs being standardised), so steep features (a sign, a median)
    are there from the start and the optimiser changes a steepness by factors (it
    learns :math:`a_j`); further ``hidden`` layers; a linear output.

    With ``knots`` (from :func:`element_knots`: uniform in :math:`x/(1 + |x|/4)`
    over the range of the data), :math:`g` is evaluated at the knots only and
    interpolated linearly in between (extrapolated beyond): the cost of a step is then
    a few operations per data point whatever the network.

    Parameters
    ----------
    n_outputs : int
    hidden : tuple of int
    knots : array-like of shape (n_knots,) or None
    quantiles : array-like of shape (n_quantiles,) or None
        Increasing quantiles of the (standardised) data at equally spaced levels: the
        break points are then drawn from the data's distribution (many where the data
        are dense, where a steep feature pays) instead of uniformly in [-3, 3].
    """

    def __init__(self, n_outputs, hidden=(32,), knots=None, quantiles=None):
        super().__init__()
        width = int(hidden[0])
        self.log_slope = nn.Parameter(torch.empty(width))
        self.centre = nn.Parameter(torch.empty(width))
        self.register_buffer("sign", torch.where(torch.arange(width) % 2 == 0, 1.0, -1.0))
        layers = []
        for size in hidden[1:]:
            layers += [nn.Linear(width, size), nn.SiLU()]
            width = size
        self.hidden = nn.Sequential(*layers)
        self.out = nn.Linear(width, n_outputs)
        knots = torch.zeros(0) if knots is None else torch.as_tensor(knots).reshape(-1)
        self.register_buffer("knots", knots.to(torch.get_default_dtype()))
        quantiles = (torch.zeros(0) if quantiles is None
                     else torch.as_tensor(quantiles).reshape(-1))
        self.register_buffer("quantiles", quantiles.to(torch.get_default_dtype()))
        self.reset_parameters_with(torch.Generator().manual_seed(0))

    def reset_parameters_with(self, generator):
        """Log-spaced slopes, spread break points, PyTorch's default for the rest."""
        width = len(self.log_slope)
        with torch.no_grad():
            u = torch.rand(2, width, generator=generator, dtype=self.log_slope.dtype)
            low, high = (math.log(v) for v in _SLOPES)
            self.log_slope.copy_(low + u[0] * (high - low))
            self.centre.copy_(self._inverse_cdf(u[1]))
            for layer in list(self.hidden) + [self.out]:
                if isinstance(layer, nn.Linear):
                    bound = 1 / math.sqrt(layer.in_features)
                    layer.weight.uniform_(-bound, bound, generator=generator)
                    layer.bias.uniform_(-bound, bound, generator=generator)

    def _inverse_cdf(self, u):
        """Break points drawn from the data (``quantiles``), or uniform in [-3, 3]."""
        q = self.quantiles.to(u.dtype)
        if len(q) < 2:
            return 6 * u - 3
        position = u * (len(q) - 1)
        left = position.floor().long().clamp(0, len(q) - 2)
        return q[left] + (position - left) * (q[left + 1] - q[left])

    def element(self, x):
        """Hidden features of every entry of ``x``: shape ``(*x.shape, width)``."""
        z = (x.unsqueeze(-1) - self.centre) * (self.sign * torch.exp(self.log_slope))
        half = z.shape[-1] // 2
        h = torch.cat([torch.tanh(z[..., :half]), nn.functional.silu(z[..., half:])], dim=-1)
        return self.hidden(h) if len(self.hidden) else h

    def interpolates(self):
        """True when :math:`g` is tabulated on knots (and :meth:`locate` applies)."""
        return len(self.knots) >= 2

    def locate(self, x):
        """Knot interval of every entry of ``x`` (n, N): ``(left, fraction, 1/width)``,
        each (n, N); it depends on the data only, so a fixed set is located once."""
        x = x.reshape(len(x), -1)
        knots = self.knots.to(x.dtype)
        start, stop = _squash(knots[[0, -1]])
        step = (stop - start) / (len(knots) - 1)
        left = torch.floor((_squash(x.detach()) - start) / step).long()
        left = left.clamp(0, len(knots) - 2)
        base = knots[left]
        inverse_width = 1 / (knots[left + 1] - base)
        return left, (x - base) * inverse_width, inverse_width

    def from_located(self, located, tangents=None):
        r"""Summaries of located data and, with ``tangents`` :math:`\partial x/\partial
        \theta` (m, N, n_params) of its first m rows, their derivatives (m, n_outputs,
        n_params): :math:`g` is linear between knots, so
        :math:`\partial t/\partial\theta = \sum_i g'(x_i)\,\partial x_i/\partial\theta
        / \sqrt N` with :math:`g'` the slope of the interval (no forward-mode autograd)."""
        left, fraction, inverse_width = located
        features = self.element(self.knots.to(fraction.dtype))
        if isinstance(self.out, nn.Linear):  # the output layer applied to the knots only
            values, bias = features @ self.out.weight.T, self.out.bias
        else:  # (the features themselves, for the closed-form output layer)
            values, bias = self.out(features), 0.0
        n_out = values.shape[1]
        table = torch.cat([values[:-1], values[1:] - values[:-1]], dim=1)  # (K-1, 2q)
        rows = table[left]  # (n, N, 2 n_out): value at the left knot, rise to the right
        low, rise = rows[..., :n_out], rows[..., n_out:]
        root = math.sqrt(left.shape[1])
        t = (low + fraction.unsqueeze(-1) * rise).sum(dim=1) / root + bias
        if tangents is None:
            return t, None
        m = len(tangents)
        slope = rise[:m] * (inverse_width[:m] / root).unsqueeze(-1)  # (m, N, n_out)
        return t, torch.einsum("niq,nip->nqp", slope, tangents)

    def forward(self, x):
        x = x.reshape(len(x), -1)
        if not self.interpolates():
            return self.out(self.element(x).sum(dim=1) / math.sqrt(x.shape[1]))
        return self.from_located(self.locate(x))[0]


_SQUASH = 4.0


def _squash(x):
    """:math:`x / (1 + |x|/4)`: increasing, linear near 0, bounded by 4 (cheap)."""
    return x / (1 + x.abs() / _SQUASH)


def element_knots(samples, n_knots=1024):
    r"""``n_knots`` knots uniform in :math:`x / (1 + |x|/4)` from the smallest to the
    largest entry of ``samples`` (standardised data: a spacing under 0.008 near 0,
    growing like :math:`x^2` in heavy tails); ``None`` for constant samples."""
    flat = np.asarray(samples, dtype=np.float64).ravel()
    low, high = (v / (1 + abs(v) / _SQUASH) for v in (flat.min(), flat.max()))
    if not high > low:
        return None
    y = np.linspace(low, high, n_knots)
    knots = y / (1 - np.abs(y) / _SQUASH)
    knots[[0, -1]] = flat.min(), flat.max()
    return knots


def _rank_uniform(values):
    """Pooled ranks of all entries mapped to (0, 1), in the shape of ``values``."""
    flat = np.asarray(values, dtype=np.float64).ravel()
    return (rankdata(flat) / (flat.size + 1)).reshape(np.shape(values))


def _same_distribution(u, threshold):
    """Chi-square test that every column of ``u`` has the same mean (per-column
    standard errors); constant columns with equal means pass."""
    n, n_cols = u.shape
    means = u.mean(axis=0)
    var = u.var(axis=0, ddof=1) / n
    spread = (means - means.mean()) ** 2
    tiny = 1e-12
    if np.all(spread <= tiny):
        return True
    q = np.sum(spread / np.maximum(var, tiny))
    return q <= threshold(n_cols - 1)


def _independent(u, threshold, max_columns=400):
    """Chi-square test that the columns of ``u`` are uncorrelated (rank correlations)."""
    n, n_cols = u.shape
    u = u[:, :max_columns]
    centred = u - u.mean(axis=0)
    norms = np.sqrt((centred**2).sum(axis=0))
    if np.any(norms == 0):
        return True  # constant columns carry no dependence
    corr = (centred / norms).T @ (centred / norms)
    m = u.shape[1]
    df = m * (m - 1) / 2
    s = n * (np.sum(corr**2) - m) / 2
    return s <= threshold(df)


def _threshold(df):
    r"""Reject a chi-square statistic with ``df`` degrees of freedom beyond
    :math:`df + 6\sqrt{2 df}` (six standard deviations)."""
    return df + 6 * math.sqrt(2 * df)


def looks_iid(samples):
    r"""True when the features of fiducial simulations look like independent draws
    of one distribution.

    Tests, on pooled ranks (robust to heavy tails and units): equal per-feature means
    of the ranks and of their absolute deviations from 1/2 (same marginal), and no rank
    correlation between features (of the ranks and of their deviations). Each
    chi-square statistic with ``df`` degrees of freedom is rejected beyond
    :math:`df + 6\sqrt{2\,df}`.

    Parameters
    ----------
    samples : array of shape (n, n_features)

    Returns
    -------
    bool
    """
    samples = np.asarray(samples, dtype=np.float64)
    n, n_features = samples.shape
    if n_features < 2 or n < 20:
        return False

    threshold = _threshold
    u = _rank_uniform(samples)
    spread = np.abs(u - 0.5)
    if not (_same_distribution(u, threshold) and _same_distribution(spread, threshold)
            and _independent(u, threshold) and _independent(spread, threshold)):
        return False
    return True


def same_derivative_distribution(derivatives):
    r"""True when every feature's :math:`\partial x/\partial\theta_k` has the same
    distribution (equal per-feature means of the pooled ranks, as in :func:`looks_iid`).

    Parameters
    ----------
    derivatives : array of shape (n, n_features, n_params)

    Returns
    -------
    bool
    """
    derivatives = np.asarray(derivatives, dtype=np.float64)
    return all(_same_distribution(_rank_uniform(derivatives[..., k]), _threshold)
               for k in range(derivatives.shape[-1]))


def data_quantiles(samples, n_quantiles=99):
    """Quantiles of all entries of ``samples`` at levels 1 %, 2 %, ..., 99 %."""
    flat = np.asarray(samples, dtype=np.float64).ravel()
    return np.quantile(flat, np.linspace(0.01, 0.99, n_quantiles))
