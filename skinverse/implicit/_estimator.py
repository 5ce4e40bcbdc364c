"""ImplicitClassifier and ImplicitRegressor: implicit deep learning as sklearn estimators.

The shared machinery (module construction, well-posedness, diagnostics, ``from_mlp``,
``robustness_bound``, ``plot_structure``) lives in :mod:`._mixin`; the training loop is
the shared :class:`~skinverse.base.BaseTorchEstimator`.
"""

from sklearn.base import ClassifierMixin, RegressorMixin
from sklearn.utils._param_validation import StrOptions

from .._base import BaseTorchEstimator, ClassifierHead, RegressorHead, fill_doc, shared_params
from ._mixin import _fill_implicit, _ImplicitMixin


@_fill_implicit
@fill_doc(max_epochs=200, learning_rate=0.001)
class ImplicitClassifier(ClassifierMixin, _ImplicitMixin, ClassifierHead, BaseTorchEstimator):
    r"""Implicit deep learning classifier: an equilibrium network with guaranteed
    well-posedness.
{maths}

    Two classes use one logit and the logistic loss; more use softmax cross-entropy.

    Parameters
    ----------
    {implicit_parameters}
    class_weight : dict, 'balanced' or None, default=None
        Weights of the classes in the loss, multiplied with ``sample_weight``.
    {shared_parameters}

    Attributes
    ----------
    classes_ : ndarray of shape (n_classes,)
        Class labels.
    n_outputs_ : int
        Number of logits (1 for two classes).
    {implicit_attributes}
    {shared_attributes}

    See Also
    --------
    ImplicitRegressor : The regression counterpart.
    sklearn.neural_network.MLPClassifier : The layered network ``from_mlp`` embeds.

    References
    ----------
    L. El Ghaoui, F. Gu, B. Travacca, A. Askari, A. Tsai, "Implicit Deep Learning",
    SIAM Journal on Mathematics of Data Science 3(3), 930-958, 2021.

    E. Winston, J. Z. Kolter, "Monotone operator equilibrium networks", NeurIPS 2020.

    Examples
    --------
    >>> from sklearn.datasets import load_digits
    >>> from sklearn.pipeline import make_pipeline
    >>> from sklearn.preprocessing import StandardScaler
    >>> from skinverse.implicit import ImplicitClassifier
    >>> X, y = load_digits(return_X_y=True)
    >>> clf = make_pipeline(StandardScaler(), ImplicitClassifier(
    ...     hidden_size=32, max_epochs=10, batch_size=32, learning_rate=3e-3,
    ...     random_state=0)).fit(X[:500], y[:500])
    >>> clf.score(X[500:700], y[500:700]) > 0.8
    True
    >>> clf[-1].A_inf_norm_ <= 0.95 + 1e-6
    True
    """

    _parameter_constraints = {
        **_ImplicitMixin._parameter_constraints,
        "class_weight": [None, dict, StrOptions({"balanced"})],
    }

    def __init__(
        self, *, hidden_size=100, activation="relu", fit_D=True, bias=True,
        well_posedness="inf_norm", kappa=0.95, monotone_margin=0.1, structure="dense",
        rank=None, solver="auto", max_iter=50, solver_tol=1e-4, backward="implicit",
        backward_steps=5, l1_penalty=0.0, reuse_equilibria=True, class_weight=None,
        max_epochs=200, batch_size="auto", learning_rate=1e-3,
        optimizer="adam", alpha=0.0, lr_schedule=None, grad_clip=None, early_stopping=False,
        validation_fraction=0.1, n_iter_no_change=10, tol=1e-4, warm_start=False,
        random_state=None, device="auto", dtype="float32", verbose=0, callbacks=None,
        log_dir=None, checkpoint_dir=None,
    ):
        self.class_weight = class_weight
        self._store_implicit_params(locals())
        super().__init__(**shared_params(locals()))


@_fill_implicit
@fill_doc(max_epochs=200, learning_rate=0.001)
class ImplicitRegressor(RegressorMixin, _ImplicitMixin, RegressorHead, BaseTorchEstimator):
    r"""Implicit deep learning regressor (single or multi-output): an equilibrium network
    with guaranteed well-posedness.
{maths}

    Trained on the mean squared error; ``score`` is :math:`R^2`.

    Parameters
    ----------
    {implicit_parameters}
    {shared_parameters}

    Attributes
    ----------
    n_outputs_ : int
        Number of outputs.
    {implicit_attributes}
    {shared_attributes}

    See Also
    --------
    ImplicitClassifier : The classification counterpart.

    References
    ----------
    L. El Ghaoui, F. Gu, B. Travacca, A. Askari, A. Tsai, "Implicit Deep Learning",
    SIAM Journal on Mathematics of Data Science 3(3), 930-958, 2021.

    E. Winston, J. Z. Kolter, "Monotone operator equilibrium networks", NeurIPS 2020.

    Examples
    --------
    >>> import numpy as np
    >>> from skinverse.implicit import ImplicitRegressor
    >>> rng = np.random.RandomState(0)
    >>> X = rng.uniform(-1, 1, size=(300, 3))
    >>> y = np.sin(2 * X[:, 0]) + X[:, 1] * X[:, 2]
    >>> reg = ImplicitRegressor(hidden_size=32, max_epochs=100, learning_rate=1e-2,
    ...                         random_state=0).fit(X, y)
    >>> reg.score(X, y) > 0.8
    True
    """

    def __init__(
        self, *, hidden_size=100, activation="relu", fit_D=True, bias=True,
        well_posedness="inf_norm", kappa=0.95, monotone_margin=0.1, structure="dense",
        rank=None, solver="auto", max_iter=50, solver_tol=1e-4, backward="implicit",
        backward_steps=5, l1_penalty=0.0, reuse_equilibria=True, max_epochs=200,
        batch_size="auto", learning_rate=1e-3,
        optimizer="adam", alpha=0.0, lr_schedule=None, grad_clip=None, early_stopping=False,
        validation_fraction=0.1, n_iter_no_change=10, tol=1e-4, warm_start=False,
        random_state=None, device="auto", dtype="float32", verbose=0, callbacks=None,
        log_dir=None, checkpoint_dir=None,
    ):
        self._store_implicit_params(locals())
        super().__init__(**shared_params(locals()))

