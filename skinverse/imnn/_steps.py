"""One IMNN step: summaries of all simulations (chunked), the Fisher statistics, the loss
and its gradient, accumulated in two passes when the simulations are chunked."""

import torch

from ._data import design_statistics, summary_derivatives
from ._fisher import fisher_statistics, imnn_loss


class _FisherSteps:
    """Mixed into :class:`IMNNTransformer`: the maths of one optimisation step."""

    def _chunks(self, n):
        size = n if self.batch_size == "auto" else self.batch_size
        return [slice(s, s + size) for s in range(0, n, size)]

    def _summaries(self, data):
        """(summaries, derivatives of summaries) of all simulations, chunk by chunk."""
        t = torch.cat([self._forward(data["X"][c]) for c in self._chunks(len(data["X"]))])
        if data["mode"] == "design":
            return t, None
        derivs = data["derivatives"]
        source = data.get("X_d", data["X"])[: len(derivs)]
        dt = torch.cat([
            summary_derivatives(self._forward, source[c], derivs[c], data["mode"], self._delta)
            for c in self._chunks(len(derivs))
        ])
        return t, dt

    def _statistics(self, t, dt, data):
        problem = None
        try:
            with torch.no_grad():
                centred = t - t.mean(dim=0)
                smallest = float(torch.linalg.eigvalsh(centred.T @ centred / len(t)).min())
                scale = float(t.pow(2).mean()) + torch.finfo(t.dtype).tiny
            if not smallest > 100 * torch.finfo(t.dtype).eps * scale:
                problem = f"smallest covariance eigenvalue {smallest:.3g}"
            else:
                if data["mode"] == "design":
                    return design_statistics(t, data["y"])
                return fisher_statistics(t, dt)
        except torch.linalg.LinAlgError as exc:
            problem = str(exc)
        raise ValueError(
            "The covariance of the summaries (or the Fisher matrix) is singular: the "
            "network's summaries are degenerate (constant or collinear inputs?) or too few "
            f"simulations were given ({problem})."
        )

    def _step_loss(self, data):
        """Loss of all simulations with gradients in the weights (two passes if chunked)."""
        single = len(self._chunks(len(data["X"]))) == 1 and (
            data["mode"] == "design" or len(self._chunks(len(data["derivatives"]))) == 1)
        if single:
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
            (self._forward(data["X"][c]) * grads[0][c]).sum().backward()
        if dt is not None:
            source = data.get("X_d", data["X"])[: len(data["derivatives"])]
            for c in self._chunks(len(data["derivatives"])):
                part = summary_derivatives(self._forward, source[c], data["derivatives"][c],
                                           data["mode"], self._delta)
                (part * grads[1][c]).sum().backward()
        return loss.detach(), record
