"""Where the IMNN's simulations come from: validation of ``fit``'s data (a simulator,
fiducial simulations with derivatives, or simulations at varied parameters), the choice of
the default network (and building it) and the input standardisation they imply,
tensors, the validation split and fresh simulations."""

import copy
import math

import numpy as np
import torch
from sklearn.utils.validation import validate_data

from .._base import FLOAT_DTYPES, make_generator, to_numpy
from ..nn import MLP
from ._data import check_derivatives, enough_to_validate, split_simulations
from ._networks import (
    ElementwiseSum,
    data_quantiles,
    element_knots,
    looks_iid,
    same_derivative_distribution,
)
from ._simulate import simulate_derivatives, simulate_fiducial
from ._steps import input_standardization


def _per_feature(derivatives, layout):
    """Derivatives as (n, n_features, n_params): gradients as they are, finite-difference
    pairs (n, 2, n_params, n_features) as differences (their scale does not matter)."""
    derivatives = np.asarray(derivatives)
    if layout == "gradient":
        return derivatives
    return np.swapaxes(derivatives[:, 0] - derivatives[:, 1], 1, 2)


class _FisherInputs:
    """Mixed into :class:`IMNNTransformer`: its data, validated into tensors."""

    def _theta(self, n_params=None):
        if self.theta_fid is None:
            raise ValueError("theta_fid is required with a simulator or derivatives.")
        theta = np.atleast_1d(np.asarray(self.theta_fid, dtype=np.float64))
        if theta.ndim != 1 or (n_params is not None and len(theta) != n_params):
            raise ValueError(
                f"theta_fid must have one value per parameter ({n_params}), got {theta.shape}."
            )
        return theta

    def _streams(self, source):
        """Simulations passed lazily are read whole (the Fisher loss needs the whole set
        of each step); a ``simulator`` streams fresh ones instead."""
        return False

    def _validate_fit_data(self, X, y, *, reset, derivatives=None):
        if X is None:
            if self.simulator is None:
                raise ValueError("X is None: pass simulations (X with derivatives or y), or "
                                 "set simulator.")
            if self.n_d > self.n_s:
                raise ValueError(f"n_d={self.n_d} exceeds n_s={self.n_s}; the IMNN needs "
                                 "n_d <= n_s.")
            theta = self._theta()
            n_probe = min(self.n_s, 1000) if reset and self.standardize is not False else 3
            probe = simulate_fiducial(self.simulator, torch.as_tensor(theta[None]), n_probe,
                                      make_generator(0))
            self.n_features_in_ = int(np.prod(probe.shape[1:]))
            if reset:
                self._choose_architecture(probe, lambda: self._probe_derivatives(theta))
                self._set_input_standardization(probe)
            return {"mode": "simulator", "theta": theta}
        if derivatives is not None:
            X = validate_data(self, X, reset=reset, dtype=FLOAT_DTYPES)
            derivatives, layout = check_derivatives(derivatives, X.shape[1], len(X))
            n_params = derivatives.shape[-1] if layout == "gradient" else derivatives.shape[2]
            data = {"mode": layout, "theta": self._theta(n_params), "X": X,
                    "derivatives": derivatives}
            if reset:
                self._choose_architecture(X, lambda: _per_feature(derivatives, layout))
                self._set_input_standardization(X)
            if layout == "gradient":  # the gradients belong to the first n_d simulations
                data["X_d"] = X[: len(derivatives)]
            return data
        if y is None:
            raise ValueError(
                "IMNNTransformer requires y to be passed, but the target y is None: pass the "
                "parameters of each simulation as y, or derivatives=..., or use a simulator."
            )
        X, y = validate_data(self, X, y, reset=reset, dtype=FLOAT_DTYPES, multi_output=True,
                             y_numeric=True)
        y = y.reshape(len(y), -1).astype(np.float64)
        if len(X) < y.shape[1] + 3 or np.linalg.matrix_rank(y - y.mean(axis=0)) < y.shape[1]:
            raise ValueError(
                "fit(X, y) estimates dmu/dtheta by regressing the summaries on y: y must vary "
                f"in every parameter, with more than {y.shape[1] + 2} samples; got "
                f"{len(X)} sample(s)."
            )
        theta = y.mean(axis=0) if self.theta_fid is None else self._theta(y.shape[1])
        if reset:
            self._choose_architecture(X, None)
            self._set_input_standardization(X)
        return {"mode": "design", "theta": theta, "X": X, "y": y}

    def _choose_architecture(self, samples, derivatives):
        """Resolve ``architecture`` into ``architecture_`` (see its documentation);
        ``derivatives`` is None (design mode) or a callable returning them."""
        if self.model is not None:
            self.architecture_ = "model"
        elif self.architecture != "auto":
            self.architecture_ = self.architecture
        elif derivatives is None:
            self.architecture_ = "mlp"
        else:
            samples = np.asarray(samples, dtype=np.float64).reshape(len(samples), -1)
            iid = looks_iid(samples) and same_derivative_distribution(derivatives())
            self.architecture_ = "deepsets" if iid else "mlp"

    def _probe_derivatives(self, theta):
        """Derivatives of a few fiducial simulations, (n, n_features, n_params)."""
        n = min(self.n_d, 500)
        _, dx = simulate_derivatives(self.simulator, torch.as_tensor(theta[None]), n,
                                     make_generator(1), self.delta_theta)
        if self.delta_theta is None:
            return to_numpy(dx.reshape(n, -1, dx.shape[-1]))
        return _per_feature(to_numpy(dx.reshape(n, 2, dx.shape[2], -1)), "pairs")

    def _set_input_standardization(self, samples):
        """Fit ``input_standardization_`` (see ``standardize``) on fiducial simulations."""
        if self.standardize is False or len(samples) < 2:
            self.input_standardization_ = None
            self._knots = element_knots(samples) if len(samples) >= 2 else None
            self._quantiles = data_quantiles(samples) if len(samples) >= 2 else None
            return
        samples = np.asarray(samples, dtype=np.float64).reshape(len(samples), -1)
        if self.standardize == "auto" and self.architecture_ != "mlp":
            samples = samples.reshape(-1, 1)  # one mean and scale for all features
        mean, scale = input_standardization(samples)
        self._knots = element_knots((samples - mean) / scale)
        self._quantiles = data_quantiles((samples - mean) / scale)
        shape = (self.n_features_in_,)
        self.input_standardization_ = (np.broadcast_to(mean, shape).copy(),
                                       np.broadcast_to(scale, shape).copy())

    def _to_tensors(self, data):
        tensors = {k: v for k, v in data.items() if k in ("mode", "theta")}
        tensors.update(super()._to_tensors(
            {k: v for k, v in data.items() if k in ("X", "y", "derivatives", "X_d")}))
        tensors["theta"] = torch.as_tensor(data["theta"], dtype=self._torch_dtype,
                                           device=self.device_)
        return tensors

    def _to_tensors_plain(self, data):
        return super()._to_tensors({k: v for k, v in data.items() if k != "mode"})

    def _split(self, tensors, data):
        """Validation data: fresh simulations, or a fraction of each kind of simulation."""
        if tensors["mode"] == "simulator":
            return tensors, self._simulate(make_generator(self._validation_seed()))
        return split_simulations(tensors, self.validation_fraction, self._split_seed())

    def _n_rows(self, tensors):
        return len(tensors["X"]) if "X" in tensors else self.n_s

    def _simulate(self, generator):
        """Fresh simulations: with autograd derivatives, the ``n_d`` derivative
        simulations are the first of the ``n_s`` fiducial ones (as in Charnock et al.);
        with ``delta_theta``, ``n_s`` fiducial simulations and ``n_d`` seed-matched pairs."""
        theta = torch.as_tensor(self.theta_fid_, dtype=self._torch_dtype)
        if self.delta_theta is None:
            x_d, dx = simulate_derivatives(self.simulator, theta[None], self.n_d, generator)
            parts = [x_d.reshape(self.n_d, -1)]
            if self.n_s > self.n_d:
                parts.append(simulate_fiducial(self.simulator, theta[None],
                                               self.n_s - self.n_d, generator)
                             .reshape(self.n_s - self.n_d, -1))
            data = {"mode": "gradient", "derivatives": dx.reshape(self.n_d, -1, dx.shape[-1]),
                    "X": torch.cat(parts)}
        else:
            x = simulate_fiducial(self.simulator, theta[None], self.n_s, generator)
            _, dx = simulate_derivatives(self.simulator, theta[None], self.n_d, generator,
                                         self.delta_theta)
            data = {"mode": "pairs", "X": x.reshape(self.n_s, -1),
                    "derivatives": dx.reshape(self.n_d, 2, dx.shape[2], -1)}
        data = {k: v.to(self.device_) if isinstance(v, torch.Tensor) else v
                for k, v in data.items()}
        data["theta"] = theta.to(self.device_)
        return data

    # ------------------------------------------------------------------ network
    def _build_module(self, data):
        self.theta_fid_ = np.asarray(data["theta"], dtype=np.float64)
        self.n_params_ = len(self.theta_fid_)
        self._delta = None
        if data["mode"] in ("pairs", "simulator") and self.delta_theta is not None:
            self._delta = torch.as_tensor(np.broadcast_to(
                np.asarray(self.delta_theta, dtype=np.float64), (self.n_params_,)).copy())
        elif data["mode"] == "pairs":
            raise ValueError("Finite-difference pairs need delta_theta (the half-step).")
        n_summaries = self.n_summaries or self.n_params_
        if n_summaries < self.n_params_:
            raise ValueError(f"n_summaries={n_summaries} must be at least n_params="
                             f"{self.n_params_}.")
        self.n_summaries_ = n_summaries
        self._data_validates = enough_to_validate(data, self.n_summaries_,
                                                  self.validation_fraction)
        if self.model is not None:
            return copy.deepcopy(self.model)
        if self.architecture_ == "deepsets":
            return ElementwiseSum(n_summaries, self._hidden_sizes(), self._knots,
                                  self._quantiles)
        return MLP(self.n_features_in_, self._hidden_sizes(), n_summaries, activation="silu")

    def _validates(self):
        if self.early_stopping != "auto":
            return bool(self.early_stopping)
        return getattr(self, "_data_validates", True)

    def _hidden_sizes(self):
        """``hidden_layer_sizes``, with 'auto' resolved (see its documentation)."""
        if self.hidden_layer_sizes != "auto":
            return self.hidden_layer_sizes
        if self.architecture_ == "deepsets":
            return (32,)
        wanted = 8 * (self.n_features_in_ + self.n_params_)
        return (int(min(512, max(64, 2 ** math.ceil(math.log2(wanted))))),)
