r"""The last layer of the default networks in closed form.

The summaries of the default networks are a linear layer on features :math:`h` of the
data. For fixed features the Fisher-optimal linear combination is
:math:`W = C_h^{-1}\,\partial\mu_h/\partial\theta` (any invertible map of it keeps the
same information), so the layer is solved rather than learned: at the start of training
(from the random features of the deep-sets network), and once more at the end on many
fresh simulations, where stochastic gradients leave it short of that optimum.
"""

import torch

from .._base import make_generator

_POLISH_SIMULATIONS, _POLISH_CAP = 10, 10_000


class _Readout:
    """Mixed into :class:`IMNNTransformer`: the closed-form last layer."""

    def _readout_layer(self):
        """(owner, name) of the default network's last linear layer, or None."""
        module = self.module_
        if isinstance(getattr(module, "out", None), torch.nn.Linear):
            return module, "out"
        if (self.architecture_ == "mlp" and isinstance(module, torch.nn.Sequential)
                and isinstance(module[-1], torch.nn.Linear)):
            return module, str(len(module) - 1)
        return None

    def _features(self, data):
        """Features :math:`h` (n, width) before the last layer and their derivatives'
        mean (width, n_params)."""
        owner, name = self._readout_layer()
        readout, saved = getattr(owner, name), self.n_summaries_
        setattr(owner, name, torch.nn.Identity())
        self.n_summaries_ = readout.in_features
        try:
            with torch.no_grad():
                h, dh = self._summaries(data)
        finally:
            setattr(owner, name, readout)
            self.n_summaries_ = saved
        return h.double(), dh.double().mean(dim=0)

    def _init_readout(self, data, ridge=1e-2):
        r"""Set the last linear layer of the default network to the Fisher-optimal
        linear combination of its input features :math:`h`, whitened:
        :math:`W = C_h^{-1}\,\partial\mu_h/\partial\theta` (ridge
        ``ridge`` :math:`\operatorname{tr} C_h / n_h`; 1e-2 at the start, where the
        features are random and the solution only has to be a good start) for the first
        ``n_params`` summaries, the current rows for any others, then
        :math:`t = L^{-1}(W h - \bar t)` with :math:`LL^\top` the covariance of
        :math:`W h`: the summaries start uncorrelated with unit variance, so the
        covariance regulariser is off from the first step and training refines a good
        compression instead of first rescaling a random one.
        """
        owner, name = self._readout_layer()
        readout = getattr(owner, name)
        h, dh = self._features(data)
        mean = h.mean(dim=0)
        cov = torch.cov(h.T).reshape(len(mean), len(mean))
        scale = ridge * torch.trace(cov) / len(mean) + torch.finfo(torch.float64).tiny
        eye = torch.eye(len(mean), dtype=cov.dtype)
        weight = readout.weight.detach().double().clone()
        n_params = dh.shape[1]
        weight[:n_params] = torch.linalg.solve(cov + scale * eye, dh).T
        cov_t = weight @ cov @ weight.T
        factor, info = torch.linalg.cholesky_ex(cov_t + 1e-9 * torch.trace(cov_t) * torch.eye(
            len(cov_t), dtype=cov_t.dtype))
        if int(info) != 0 or not bool(torch.isfinite(factor).all()):
            return
        weight = torch.linalg.solve_triangular(factor, weight, upper=False)
        with torch.no_grad():
            readout.weight.copy_(weight.to(readout.weight))
            readout.bias.copy_((-weight @ mean).to(readout.bias))

    def _many_simulations(self, seed_offset):
        r""":math:`10\,n_s` fresh fiducial and :math:`10\,n_d` derivative simulations (at most
        10,000 each unless ``n_s``/``n_d`` is more) from the fit's seed plus
        ``seed_offset``: enough that a statistic of them does not depend on the draw."""
        n_s, n_d = self.n_s, self.n_d
        self.n_s = max(n_s, min(_POLISH_SIMULATIONS * n_s, _POLISH_CAP))
        self.n_d = max(n_d, min(_POLISH_SIMULATIONS * n_d, _POLISH_CAP))
        try:
            return self._simulate(make_generator(self._validation_seed() + seed_offset))
        finally:
            self.n_s, self.n_d = n_s, n_d

    def _referee(self):
        r"""After a simulator fit: the validation set picks the best step by a noisy
        :math:`\ln\det F` (n_s simulations: a few per cent of noise, and the maximum over
        hundreds of steps is biased upwards, most where :math:`\det F` comes from few data
        points), so the restored weights and the last ones are scored again on
        :meth:`_many_simulations`, independent of every set used so far, and the higher
        is kept. Returns that set, on which :meth:`_polish_readout` decides too."""
        referee = self._many_simulations(4)
        last = getattr(self, "_last_weights", None)
        self._last_weights = None
        if last is not None:
            best = {k: v.clone() for k, v in self.module_.state_dict().items()}
            restored = self._validation_logdet(referee)
            self.module_.load_state_dict(last)
            if not self._validation_logdet(referee) > restored:
                self.module_.load_state_dict(best)
        return referee

    def _polish_readout(self, val):
        r"""After training (simulator mode, default network): solve the last layer once
        more on :math:`10\,n_s` fresh simulations (:meth:`_many_simulations`; ridge
        :math:`10^{-6}`, enough simulations that the solution does not over-fit them), and
        keep it when the :math:`\ln\det F` of ``val`` is higher than with the trained
        layer."""
        if self._readout_layer() is None or val is None:
            return
        owner, name = self._readout_layer()
        readout = getattr(owner, name)
        before = self._validation_logdet(val)
        saved = {k: v.clone() for k, v in readout.state_dict().items()}
        self._init_readout(self._many_simulations(3), ridge=1e-6)
        after = self._validation_logdet(val)
        if not after > before:
            readout.load_state_dict(saved)
