"""One IMNN step: summaries of all simulations (chunked), the Fisher statistics, the loss
and its gradient, accumulated in two passes when the simulations are chunked.

The network sees standardised inputs ``(x - m) / s`` (``m``, ``s`` per feature, from the
fiducial simulations; see ``input_standardization_``): the Fisher information is
invariant to an invertible map of the data, and unit-scale inputs let one learning rate
serve data of any units. The derivatives of all parameters go through one forward-mode
pass (the tangents stacked along the batch), and the statistics are computed once per
step.
"""

import numpy as np
import torch

from ._data import design_statistics
from ._fisher import covariance_factor, fisher_statistics, imnn_loss
from ._tangents import outputs, prepare, supports_tangents, with_tangents


def input_standardization(samples):
    """Per-feature mean and scale of fiducial simulations (scale 1 for a constant feature).

    Parameters
    ----------
    samples : ndarray or Tensor of shape (n, n_features)

    Returns
    -------
    mean, scale : ndarray of shape (n_features,), float64
    """
    samples = np.asarray(samples, dtype=np.float64).reshape(len(samples), -1)
    mean = samples.mean(axis=0)
    scale = samples.std(axis=0)
    floor = 1e-12 * max(1.0, float(np.abs(samples).max()))
    scale = np.where(np.isfinite(scale) & (scale > floor), scale, 1.0)
    return mean, scale


class _FisherSteps:
    """Mixed into :class:`IMNNTransformer`: the maths of one optimisation step."""

    def _chunks(self, n):
        size = n if self.batch_size == "auto" else self.batch_size
        return [slice(s, s + size) for s in range(0, n, size)]

    def _standardize_inputs(self, X):
        """``(X - m) / s`` with the fitted input standardisation (identity without)."""
        standardization = getattr(self, "input_standardization_", None)
        if standardization is None:
            return X
        mean, scale = (torch.as_tensor(v, dtype=X.dtype, device=X.device)
                       for v in standardization)
        return (X - mean) / scale

    def _net(self, X):
        """Summaries of raw (flattened) simulations."""
        return self._forward(self._standardize_inputs(X))

    def _tangents_by_hand(self):
        """The default networks' derivatives are written out (see ``_tangents.py``);
        a user's ``model`` goes through ``torch.func.jvp``."""
        return self.input_shape is None and supports_tangents(self.module_)

    def _standardize_tangents(self, derivatives):
        r""":math:`\partial x/\partial\theta` (n, n_features, n_params) in the
        network's input units."""
        standardization = getattr(self, "input_standardization_", None)
        if standardization is None:
            return derivatives
        scale = torch.as_tensor(standardization[1], dtype=derivatives.dtype,
                                device=derivatives.device)
        return derivatives / scale[:, None]

    def _derivatives(self, x, derivatives, mode):
        r""":math:`\partial t/\partial\theta`, shape (n, n_summaries, n_params), in one pass.

        ``gradient``: the chain rule by hand for the default networks, else one
        Jacobian-vector product on the simulations repeated once per parameter, the
        tangents :math:`\partial x/\partial\theta_k` stacked along the batch.
        ``pairs``: central differences of the summaries of all shifted simulations at
        once.
        """
        if mode == "gradient" and self._tangents_by_hand():
            prepared = prepare(self.module_, self._standardize_inputs(x))
            return with_tangents(self.module_, prepared,
                                 self._standardize_tangents(derivatives))[1]
        if mode == "gradient":
            n, n_features, n_params = derivatives.shape
            inputs = x.reshape(1, n, n_features).expand(n_params, -1, -1)
            tangents = derivatives.permute(2, 0, 1)
            _, dt = torch.func.jvp(self._net, (inputs.reshape(n_params * n, -1),),
                                   (tangents.reshape(n_params * n, -1),))
            return dt.reshape(n_params, n, -1).permute(1, 2, 0)
        n, _, n_params = derivatives.shape[:3]
        shifted = self._net(derivatives.reshape(n * 2 * n_params, -1))
        return self._central_differences(shifted, n, n_params)

    def _central_differences(self, shifted, n, n_params):
        shifted = shifted.reshape(n, 2, n_params, -1)
        delta = self._delta.to(shifted.dtype)
        return ((shifted[:, 0] - shifted[:, 1]) / (2 * delta[None, :, None])).transpose(1, 2)

    def _one_pass(self, data):
        """All simulations go through the network at once (``batch_size='auto'``)."""
        return len(self._chunks(len(data["X"]))) == 1 and (
            data["mode"] == "design" or len(self._chunks(len(data["derivatives"]))) == 1)

    def _summaries(self, data, cache=False):
        """(summaries, derivatives of summaries) of all simulations, chunk by chunk.

        The default networks in one pass take the summaries and their derivatives
        together (:meth:`_prepared_summaries`); with ``cache`` (a fixed set, the
        validation simulations) what depends on the data only is kept in ``data``."""
        if data["mode"] != "design" and self._one_pass(data) and self._tangents_by_hand():
            prepared = data.get("_prepared") if cache else None
            if prepared is None:
                prepared = self._prepare(data)
                if cache:
                    data["_prepared"] = prepared
            return self._prepared_summaries(data, prepared)
        t = torch.cat([self._net(data["X"][c]) for c in self._chunks(len(data["X"]))])
        if data["mode"] == "design":
            return t, None
        derivs = data["derivatives"]
        source = data.get("X_d", data["X"])[: len(derivs)]
        dt = torch.cat([self._derivatives(source[c], derivs[c], data["mode"])
                        for c in self._chunks(len(derivs))])
        return t, dt

    def _prepare(self, data):
        """Standardised (for the deep-sets network: located) inputs and tangents."""
        module, derivs = self.module_, data["derivatives"]
        with torch.no_grad():
            prepared = {"X": prepare(module, self._standardize_inputs(data["X"]))}
            if data["mode"] == "pairs":
                shifted = derivs.reshape(len(derivs) * 2 * derivs.shape[2], -1)
                prepared["shifted"] = prepare(module, self._standardize_inputs(shifted))
                return prepared
            prepared["tangents"] = self._standardize_tangents(derivs)
            if "X_d" in data:  # derivatives of other simulations than X's first rows
                source = self._standardize_inputs(data["X_d"][: len(derivs)])
                prepared["X_d"] = prepare(module, source)
        return prepared

    def _prepared_summaries(self, data, prepared):
        module = self.module_
        if "shifted" in prepared:
            t = outputs(module, prepared["X"])
            derivs = data["derivatives"]
            dt = self._central_differences(outputs(module, prepared["shifted"]),
                                           len(derivs), derivs.shape[2])
        elif "X_d" in prepared:
            t = outputs(module, prepared["X"])
            dt = with_tangents(module, prepared["X_d"], prepared["tangents"])[1]
        else:
            t, dt = with_tangents(module, prepared["X"], prepared["tangents"])
        if t.dim() != 2 or t.shape[1] != self.n_summaries_:
            raise ValueError(f"model returned shape {tuple(t.shape)}; expected "
                             f"(batch, {self.n_summaries_}) summaries.")
        return t, dt

    def _statistics(self, t, dt, data):
        problem = None
        try:
            if data["mode"] == "design":
                return design_statistics(t, data["y"])
            mean = t.mean(dim=0)
            centred = t - mean
            covariance = centred.T @ centred / (t.shape[0] - 1)
            with torch.no_grad():
                scale = t.detach().pow(2).mean() + torch.finfo(t.dtype).tiny
            factor = covariance_factor(covariance, scale)
            if factor is None:
                problem = "the covariance is not positive definite"
            else:
                return fisher_statistics(t, dt, factor=factor)
        except torch.linalg.LinAlgError as exc:
            problem = str(exc)
        raise ValueError(
            "The covariance of the summaries (or the Fisher matrix) is singular: the "
            "network's summaries are degenerate (constant or collinear inputs?) or too few "
            f"simulations were given ({problem})."
        )

    def _step_loss(self, data):
        """Loss of all simulations with gradients in the weights (two passes if chunked)."""
        if self._one_pass(data):
            t, dt = self._summaries(data)
            loss, record = imnn_loss(self._statistics(t, dt, data), self.lam, self.epsilon)
            loss.backward()
            return loss.detach(), record
        with torch.no_grad():
            t, dt = self._summaries(data)
        leaves = [t.requires_grad_()] + ([dt.requires_grad_()] if dt is not None else [])
        loss, record = imnn_loss(self._statistics(t, dt, data), self.lam, self.epsilon)
        grads = torch.autograd.grad(loss, leaves)
        for c in self._chunks(len(data["X"])):
            (self._net(data["X"][c]) * grads[0][c]).sum().backward()
        if dt is not None:
            source = data.get("X_d", data["X"])[: len(data["derivatives"])]
            for c in self._chunks(len(data["derivatives"])):
                part = self._derivatives(source[c], data["derivatives"][c], data["mode"])
                (part * grads[1][c]).sum().backward()
        return loss.detach(), record
