"""Classification and regression heads shared by the supervised estimators.

A head owns what turns network outputs into a sklearn estimator: target validation and
encoding, sample and class weights, the loss, ``predict``/``predict_proba``/
``decision_function`` and the validation score. The estimator only builds the module::

    class MyClassifier(ClassifierMixin, ClassifierHead, BaseTorchEstimator):
        def _build_module(self, data):
            return make_network(self.n_features_in_, self.n_outputs_)
"""

import numpy as np
import torch
from sklearn.base import _fit_context
from sklearn.utils.class_weight import compute_sample_weight
from sklearn.utils.multiclass import check_classification_targets
from sklearn.utils.validation import (
    _check_sample_weight,
    check_is_fitted,
    validate_data,
)

from ._device import to_numpy
from ._estimator import FLOAT_DTYPES


def normalized_sample_weight(sample_weight, X, class_weight=None, y=None):
    """Sample weights scaled to mean 1, or ``None`` when they are all equal.

    With mean-1 weights the weighted batch loss ``mean(w * loss)`` is an unbiased estimate
    of the weighted risk and never divides by a batch whose weights are all zero; equal
    weights are the unweighted problem, which then runs bit-identically to no weights.
    """
    if sample_weight is None and class_weight is None:
        return None
    weights = _check_sample_weight(sample_weight, X, dtype=np.float64, ensure_non_negative=True)
    if class_weight is not None:
        weights = weights * compute_sample_weight(class_weight, y)
    mean = weights.mean()
    if not mean > 0:
        raise ValueError("sample_weight sums to zero: at least one sample needs a positive weight.")
    if np.all(weights == weights[0]):
        return None
    return weights / mean


def r2_tensor(y, pred, sample_weight=None):
    """scikit-learn's ``r2_score`` (uniform average over outputs) on tensors."""
    sums = R2Sums()
    sums.add(y, pred, sample_weight)
    return sums.r2()


class R2Sums:
    """Weighted R² accumulated over batches of (targets, predictions) tensors: per output
    the weighted squared error and the weighted variance (means and centred sums merged
    batch by batch, Chan et al.'s update), on the device until :meth:`r2`."""

    def __init__(self):
        self.weight = self.mean = self.centred = self.error = None

    def add(self, y, pred, sample_weight=None):
        wide = torch.float32 if y.device.type == "mps" else torch.float64  # (no f64 there)
        y = y.reshape(len(y), -1).to(wide)
        pred = pred.reshape(len(pred), -1).to(wide)
        w = (torch.ones(len(y), 1, dtype=y.dtype, device=y.device) if sample_weight is None
             else sample_weight.reshape(-1, 1).to(y.dtype))
        weight = w.sum()
        mean = (w * y).sum(dim=0) / weight
        centred = (w * (y - mean) ** 2).sum(dim=0)
        error = (w * (y - pred) ** 2).sum(dim=0)
        if self.weight is None:
            self.weight, self.mean, self.centred, self.error = weight, mean, centred, error
            return
        total = self.weight + weight
        delta = mean - self.mean
        self.centred = self.centred + centred + delta**2 * self.weight * weight / total
        self.mean = self.mean + delta * weight / total
        self.weight, self.error = total, self.error + error

    def r2(self, multioutput="uniform_average"):
        """scikit-learn's ``r2_score`` (a constant target scores 1 when predicted exactly,
        else 0), uniform or variance-weighted over outputs; one synchronisation."""
        num, den = self.error, self.centred
        if multioutput == "variance_weighted":
            total = den.sum()
            if float(total) > 0:
                return float(1 - num[den > 0].sum() / total)
            return float(bool((num == 0).all()))
        safe = torch.where(den > 0, den, torch.ones_like(den))
        r2 = torch.where(den > 0, 1 - num / safe, (num == 0).to(den.dtype))
        return float(r2.mean())


class RegressorHead:
    """Squared-error regression with one or several outputs."""

    def _validate_fit_data(self, X, y, *, reset, sample_weight=None):
        X, y = validate_data(
            self, X, y, reset=reset, dtype=FLOAT_DTYPES, multi_output=True, y_numeric=True
        )
        # Integer targets are regression values too: cast them to X's float dtype, or the
        # loss would compare floats with integers (CUDA's backward refuses that).
        y2d = y.reshape(len(y), -1).astype(X.dtype, copy=False)
        if reset:
            self.n_outputs_ = y2d.shape[1]
            self._y_is_1d = y.ndim == 1
        elif y2d.shape[1] != self.n_outputs_:
            raise ValueError(
                f"y has {y2d.shape[1]} output(s) but this estimator was fitted with "
                f"{self.n_outputs_}."
            )
        return {"X": X, "y": y2d, "sample_weight": normalized_sample_weight(sample_weight, X)}

    def _compute_loss(self, batch):
        pred, weights = self._forward(batch["X"]), batch.get("sample_weight")
        if weights is None:
            return torch.nn.functional.mse_loss(pred, batch["y"])
        return (weights * (pred - batch["y"]).pow(2).mean(dim=1)).mean()

    def _validation_score(self, val):
        """R² of the validation set, batch by batch (lazy data is never read whole)."""
        sums = R2Sums()
        with torch.no_grad():
            for batch in self._iter_batches(val, shuffle=False):
                sums.add(batch["y"], self._forward(batch["X"]), batch.get("sample_weight"))
        return sums.r2()

    @_fit_context(prefer_skip_nested_validation=True)
    def fit(self, X, y=None, sample_weight=None):
        """Fit the model to data matrix ``X`` and targets ``y``.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
            Training data.
        y : array-like of shape (n_samples,) or (n_samples, n_outputs)
            Target values.
        sample_weight : array-like of shape (n_samples,), default=None
            Per-sample weights of the loss.

        Returns
        -------
        self : object
            The fitted estimator.
        """
        return self._fit(X, y, incremental=False, sample_weight=sample_weight)

    @_fit_context(prefer_skip_nested_validation=True)
    def partial_fit(self, X, y, sample_weight=None):
        """Run one epoch over ``X`` and ``y``, continuing from the current state.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
            Training data.
        y : array-like of shape (n_samples,) or (n_samples, n_outputs)
            Target values.
        sample_weight : array-like of shape (n_samples,), default=None
            Per-sample weights of the loss.

        Returns
        -------
        self : object
            The updated estimator.
        """
        return self._fit(X, y, incremental=True, sample_weight=sample_weight)

    def predict(self, X):
        """Predict targets for ``X``.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
            Input data.

        Returns
        -------
        y_pred : ndarray of shape (n_samples,) or (n_samples, n_outputs)
            Predictions, in the float dtype of ``X``.
        """
        outputs, dtype = self._predict_outputs(X)
        pred = to_numpy(outputs, dtype)
        return pred.ravel() if self._y_is_1d else pred

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.target_tags.multi_output = True
        return tags


class ClassifierHead:
    """Binary (one logit, logistic loss) and multiclass (softmax cross-entropy)
    classification with string labels, sample weights and ``class_weight``."""

    def _validate_fit_data(self, X, y, *, reset, sample_weight=None, classes=None):
        X, y = validate_data(self, X, y, reset=reset, dtype=FLOAT_DTYPES)
        check_classification_targets(y)
        if reset:
            self.classes_ = np.unique(y if classes is None else np.asarray(classes))
            if len(self.classes_) < 2:
                raise ValueError(
                    f"{type(self).__name__} needs samples of at least 2 classes in y; got "
                    f"1 class: {self.classes_[0]!r}."
                )
            self.n_outputs_ = 1 if len(self.classes_) == 2 else len(self.classes_)
        elif classes is not None and not np.array_equal(np.unique(classes), self.classes_):
            raise ValueError(f"classes={np.unique(classes).tolist()} is not the same as on the "
                             f"first call, classes_={self.classes_.tolist()}.")
        unseen = np.setdiff1d(y, self.classes_)
        if unseen.size:
            raise ValueError(
                f"y contains labels {unseen.tolist()} not in classes_ "
                f"{self.classes_.tolist()}; pass every class to the first partial_fit "
                "call with classes=..."
            )
        encoded = np.searchsorted(self.classes_, y)
        class_weight = getattr(self, "class_weight", None)
        weights = normalized_sample_weight(sample_weight, X, class_weight, y)
        return {"X": X, "y": encoded, "sample_weight": weights}

    def _stratify_labels(self, data):
        labels = getattr(data, "labels", None)  # lazy data: every row's label
        return data["y"] if labels is None else labels

    def _compute_loss(self, batch):
        logits, weights = self._forward(batch["X"]), batch.get("sample_weight")
        reduction = "mean" if weights is None else "none"  # the fused mean when unweighted
        if self.n_outputs_ == 1:
            losses = torch.nn.functional.binary_cross_entropy_with_logits(
                logits[:, 0], batch["y"].to(logits.dtype), reduction=reduction
            )
        else:
            losses = torch.nn.functional.cross_entropy(logits, batch["y"], reduction=reduction)
        return losses if weights is None else (weights * losses).mean()

    def _logits_to_labels(self, logits):
        if self.n_outputs_ == 1:
            index = (logits[:, 0] > 0).long()
        else:
            index = logits.argmax(dim=1)
        return self.classes_[to_numpy(index)]

    def _validation_score(self, val):
        """Accuracy on the validation set, batch by batch on the device (one
        synchronisation)."""
        correct = total = 0
        with torch.no_grad():
            for batch in self._iter_batches(val, shuffle=False):
                logits = self._forward(batch["X"])
                index = ((logits[:, 0] > 0).long() if self.n_outputs_ == 1
                         else logits.argmax(dim=1))
                hits = index == batch["y"]
                weights = batch.get("sample_weight")
                if weights is None:
                    correct, total = correct + hits.sum(), total + len(hits)
                else:
                    weights = weights.to(torch.float32 if weights.device.type == "mps"
                                         else torch.float64)
                    correct = correct + (weights * hits).sum()
                    total = total + weights.sum()
        return float(correct / total)

    def _lazy_globals(self, source, reset):
        """Labels are small: read whole, they decide ``classes_``, the class weights and
        the stratified split (X stays on disk)."""
        if "y" not in source.keys:
            raise ValueError(f"{type(self).__name__} needs labels y: the Dataset's items "
                             "must be (x, y) pairs.")
        y = np.concatenate([a["y"] for _, a in source.chunks(keys=("y",))])
        check_classification_targets(y)
        sample_weight = None
        if "sample_weight" in source.keys:
            sample_weight = np.concatenate([a["sample_weight"] for _, a in
                                            source.chunks(keys=("sample_weight",))])
        kwargs = {}
        if reset:
            kwargs["classes"] = np.unique(y)
            if len(kwargs["classes"]) < 2:
                raise ValueError(f"{type(self).__name__} needs samples of at least 2 "
                                 f"classes in y; got 1 class: {kwargs['classes'][0]!r}.")
        classes = kwargs.get("classes", getattr(self, "classes_", None))
        unseen = np.setdiff1d(y, classes)
        if unseen.size:
            raise ValueError(f"y contains labels {unseen.tolist()} not in classes_ "
                             f"{classes.tolist()}.")
        weights = normalized_sample_weight(sample_weight, y, getattr(self, "class_weight",
                                                                     None), y)
        return weights, np.searchsorted(classes, y), kwargs

    @_fit_context(prefer_skip_nested_validation=True)
    def fit(self, X, y=None, sample_weight=None):
        """Fit the model to data matrix ``X`` and labels ``y``.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
            Training data.
        y : array-like of shape (n_samples,)
            Class labels (numbers or strings).
        sample_weight : array-like of shape (n_samples,), default=None
            Per-sample weights of the loss (multiplied by ``class_weight``).

        Returns
        -------
        self : object
            The fitted estimator.
        """
        return self._fit(X, y, incremental=False, sample_weight=sample_weight)

    @_fit_context(prefer_skip_nested_validation=True)
    def partial_fit(self, X, y, classes=None, sample_weight=None):
        """Run one epoch over ``X`` and ``y``, continuing from the current state.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
            Training data.
        y : array-like of shape (n_samples,)
            Class labels.
        classes : array-like of shape (n_classes,), default=None
            Every class that will ever appear; required on the first call unless ``y``
            already holds them all.
        sample_weight : array-like of shape (n_samples,), default=None
            Per-sample weights of the loss.

        Returns
        -------
        self : object
            The updated estimator.
        """
        return self._fit(X, y, incremental=True, sample_weight=sample_weight, classes=classes)

    def decision_function(self, X):
        """Logits: shape (n_samples,) for two classes, (n_samples, n_classes) otherwise.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
            Input data.

        Returns
        -------
        scores : ndarray
            Positive values favour ``classes_[1]`` in the binary case.
        """
        logits, dtype = self._predict_outputs(X)
        scores = to_numpy(logits, dtype)
        return scores[:, 0] if self.n_outputs_ == 1 else scores

    def _log_proba(self, X):
        logits, dtype = self._predict_outputs(X)
        logits = logits.to(torch.float64)  # so that probabilities rank like the logits
        if self.n_outputs_ == 1:
            z = logits[:, 0]
            log_proba = torch.stack([torch.nn.functional.logsigmoid(-z),
                                     torch.nn.functional.logsigmoid(z)], dim=1)
        else:
            log_proba = torch.log_softmax(logits, dim=1)
        return log_proba, dtype

    def predict_proba(self, X):
        """Class probabilities: the logistic function (two classes) or the softmax.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
            Input data.

        Returns
        -------
        proba : ndarray of shape (n_samples, n_classes)
            Columns follow ``classes_``.
        """
        log_proba, dtype = self._log_proba(X)
        return to_numpy(log_proba.exp(), dtype)

    def predict_log_proba(self, X):
        """Logarithm of :meth:`predict_proba`, computed stably from the logits.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
            Input data.

        Returns
        -------
        log_proba : ndarray of shape (n_samples, n_classes)
            Log-probabilities, columns following ``classes_``.
        """
        log_proba, dtype = self._log_proba(X)
        return to_numpy(log_proba, dtype)

    def predict(self, X):
        """Predict class labels for ``X``.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
            Input data.

        Returns
        -------
        y_pred : ndarray of shape (n_samples,)
            Labels from ``classes_``.
        """
        check_is_fitted(self)
        logits, _ = self._predict_outputs(X)
        return self._logits_to_labels(logits)
