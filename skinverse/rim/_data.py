"""RIM data handling: shapes against the operator, standardised units, the Wiener start
and lazy (streamed) data. A mixin of :class:`RIMRegressor`, kept apart from the estimator's
face and training steps."""

import numpy as np
import torch

from .._base._sources import STREAM_ROWS
from ._physics import (
    check_operator,
    check_operator_shapes,
    row_chunks,
    standardization,
    validate_extras,
    wiener_filter,
)


_LINK_RANGES = {"softplus": (0.0, np.inf, "[0, inf)"), "sigmoid": (0.0, 1.0, "[0, 1]")}


def check_link_range(link, y):
    """A ValueError when the signals lie outside what ``link`` can reconstruct."""
    if link not in _LINK_RANGES or y.size == 0:
        return
    low, high, text = _LINK_RANGES[link]
    y_min, y_max = float(np.min(y)), float(np.max(y))
    if y_min < low or y_max > high:
        raise ValueError(
            f"link={link!r} reconstructs signals in {text}, but y has values in "
            f"[{y_min:.4g}, {y_max:.4g}]; use link='identity' or rescale y.")


class RIMData:
    """Data validation and units for :class:`RIMRegressor` (see its ``standardize`` and
    ``init`` parameters); ``super()`` reaches the regression head's validation."""

    def _input_shape(self):
        """``input_shape``, or with ``backbone='auto'`` and an operator on 2-D signals (one
        channel) the operator's signal shape: images get a convolutional network."""
        op = self.operator
        if (self.input_shape is None and self.backbone == "auto" and op is not None
                and len(tuple(op.input_shape)) == 2 and self.channels == 1):
            return tuple(op.input_shape)
        return self.input_shape

    def _shapes(self, n_obs, n_signal):
        """(observation shape, signal shape, network shape), checked against the data."""
        op = self.operator
        obs_shape = tuple(op.output_shape) if op is not None else (n_obs,)
        signal_shape = tuple(op.input_shape) if op is not None else (n_signal,)
        if int(np.prod(obs_shape)) != n_obs:
            raise ValueError(
                f"X has {n_obs} features but the operator's output_shape {obs_shape} holds "
                f"{int(np.prod(obs_shape))}."
            )
        if int(np.prod(signal_shape)) != n_signal:
            raise ValueError(
                f"y has {n_signal} features but the operator's input_shape {signal_shape} "
                f"holds {int(np.prod(signal_shape))}."
            )
        input_shape = self._input_shape()
        check_operator_shapes(op, input_shape, self.channels, self.backbone)
        if input_shape is None:
            net_shape = (n_signal,)
        else:
            net_shape = (self.channels, *input_shape)
            if len(input_shape) not in (1, 2, 3) or int(np.prod(net_shape)) != n_signal:
                raise ValueError(
                    f"channels={self.channels} x input_shape={input_shape} must be a "
                    f"1-D, 2-D or 3-D shape holding the {n_signal} signal features."
                )
        if op is None and (self.score_fn or self.energy_fn) and n_obs != n_signal:
            raise ValueError(
                "Without an operator the network sees X in place of A^H X, so X and y must "
                f"have the same number of features (got {n_obs} and {n_signal}); pass the "
                "operator as well."
            )
        return obs_shape, signal_shape, net_shape

    def _simulate(self, n, generator=None):
        """Fresh (observation, signal) pairs from the prior and the operator."""
        generator = self._generator if generator is None else generator
        signals = torch.as_tensor(self.prior_sampler(n, generator))
        signals = signals.to(dtype=self._torch_dtype).reshape(n, *self.operator_.input_shape)
        signals = signals.to(self.device_)
        noise = torch.randn((n, *self.operator_.output_shape), generator=generator,
                            dtype=self._torch_dtype).to(self.device_)
        observations = self.operator_.forward(signals) + self.noise_std_ * noise
        return {"X": observations.reshape(n, -1), "y": signals.reshape(n, -1)}

    def _validate_fit_data(self, X, y, *, reset, sample_weight=None, **extras):
        if self.operator is not None:
            check_operator(self.operator)
        if self.score_fn is not None and self.energy_fn is not None:
            raise ValueError("Give score_fn or energy_fn, not both: each defines the "
                             "likelihood (the score is minus the energy's gradient).")
        if X is None and self.prior_sampler is not None:
            if self.operator is None or self.noise_std is None:
                raise ValueError("Training from prior_sampler needs an operator and noise_std.")
            self.n_features_in_ = int(np.prod(self.operator.output_shape))
            self.n_outputs_, self._y_is_1d = int(np.prod(self.operator.input_shape)), False
            if reset:
                self._standardization_ = None  # simulated pairs are in the prior's units
            return {"X": None, "y": None, "simulate": True}
        data = super()._validate_fit_data(X, y, reset=reset, sample_weight=sample_weight)
        self._shapes(data["X"].shape[1], data["y"].shape[1])
        check_link_range(self.link, data["y"])
        data.update(validate_extras(extras, len(data["X"]), self.score_fn, self.energy_fn))
        if reset:
            self._standardization_ = None
            if self._standardizes() and not getattr(self, "_reading_lazily", False):
                self._standardization_ = standardization(
                    row_chunks(data["y"], data["X"], size=STREAM_ROWS), self.operator)
        if getattr(self, "_standardization_", None) is not None:
            data["X"] = self._standardize_observations(data["X"])
            mean, _, scale = self._standardization_
            data["y"] = ((data["y"] - mean) / scale).astype(data["y"].dtype, copy=False)
        return data

    def _standardizes(self):
        """Whether fit works in standardised units (see ``standardize``)."""
        if self.standardize != "auto":
            return bool(self.standardize)
        return (self.link == "identity" and self.score_fn is None and self.energy_fn is None
                and not getattr(self, "_simulating", False))

    def _standardize_observations(self, X):
        _, obs_mean, scale = self._standardization_
        return ((X - obs_mean) / scale).astype(X.dtype, copy=False)

    def _predict_inputs(self, X):
        """Observations in the units fit worked in (a hook of ``_predict_outputs``)."""
        if getattr(self, "_standardization_", None) is None:
            return X
        return self._standardize_observations(X)

    def _physics_noise(self, noise_std):
        """The noise level in the units fit works in (standardised or not)."""
        if noise_std is None or self.noise_std is None or self._standardization_ is None:
            return noise_std
        return noise_std / self._standardization_[2]

    def _user_noise(self, noise_std):
        """A noise level in fit's units back in the data's units."""
        if noise_std is None or getattr(self, "_standardization_", None) is None:
            return noise_std
        return noise_std * self._standardization_[2]

    def _set_wiener_init(self, module, signals):
        """Give ``module`` the Wiener filter of the training signals (``init='wiener'``,
        or 'auto' with an operator, Gaussian noise and ``n_signal * n_obs <= 2**22``)."""
        wanted = self.init == "wiener" or (
            self.init == "auto" and self.n_outputs_ * self.n_features_in_ <= 2**22)
        if not wanted:
            return
        if signals is None or not self.physics_.linear_gaussian:
            if self.init == "wiener":
                raise ValueError("init='wiener' needs training signals y, an operator and "
                                 "a Gaussian noise level (no score_fn/energy_fn).")
            return
        gain, offset = wiener_filter(self.operator_, self.physics_.noise_std, signals())
        module.set_wiener(gain, offset)

    def _streams(self, source):
        """Lazy data is read batch by batch unless the physics must be learned from all
        of it at once (no operator: the least-squares model; no ``noise_std``: the
        residual's spread)."""
        learned = self.score_fn is None and self.energy_fn is None and (
            self.operator is None or self.noise_std is None)
        return not learned

    def _validate_lazy(self, source, reset):
        """The head validated in the data's units, then the standardisation gathered from
        every row in one streamed pass (as for arrays), then the head in its units."""
        self._reading_lazily = True
        try:
            plan = super()._validate_lazy(source, reset)
        finally:
            self._reading_lazily = False
        if reset and self._standardizes():
            chunks = ((c["y"], c["X"]) for _, c in self._validated_chunks(plan))
            self._standardization_ = standardization(chunks, self.operator)
            plan.update(self._validate_lazy_batch(plan, np.arange(len(plan["X"]))))
        return plan
