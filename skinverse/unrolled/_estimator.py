"""UnrolledRegressor: model-based deep reconstruction (MoDL, CG-SENSE, Deep Basis Pursuit,
unrolled proximal gradient, ResNet) as a scikit-learn estimator."""

import copy
from numbers import Integral, Real

import numpy as np
import torch
from sklearn.base import RegressorMixin, _fit_context
from sklearn.utils._param_validation import HasMethods, Interval, StrOptions
from sklearn.utils.validation import _num_samples, check_is_fitted, validate_data

from .._base import (
    FLOAT_DTYPES,
    BaseTorchEstimator,
    fill_doc,
    normalized_sample_weight,
    shared_params,
    to_numpy,
)
from ..metrics import psnr, ssim
from ..nn import DnCNN, ResNetDenoiser, UNet
from ..operators import MatrixOperator, MultiCoilMRI
from ._module import UnrolledModule

_DENOISERS = {"resnet": ResNetDenoiser, "dncnn": DnCNN, "unet": UNet}


def _complex(real, shape):
    """(batch, 2 * prod(shape)) real -> (batch, *shape) complex."""
    two = real.reshape(real.shape[0], 2, *shape)
    return torch.complex(two[:, 0], two[:, 1])


def _real(z):
    return torch.stack([z.real, z.imag], dim=1).reshape(z.shape[0], -1)


def _magnitudes(flat, image_shape):
    two = np.asarray(flat).reshape(len(flat), 2, -1)
    return np.sqrt(two[:, 0] ** 2 + two[:, 1] ** 2)


@fill_doc(max_epochs=50, learning_rate=0.001)
class UnrolledRegressor(RegressorMixin, BaseTorchEstimator):
    r"""Model-based deep reconstruction: a learned denoiser alternating with data
    consistency through a forward operator (multi-coil MRI by default).

    .. math::

        \text{MoDL:}\quad x_{k+1} = (A^H A + \lambda I)^{-1}\big(A^H y + \lambda
        D_\theta(x_k)\big), \qquad x_0 = A^H y,

    the inverse by conjugate gradients (differentiated through its iterations). Other
    ``method`` values: 'cg-sense' (:math:`(A^H A + \lambda I)^{-1} A^H y` with a learnable
    :math:`\lambda`, no network), 'pgd' (:math:`x_{k+1} = D(x_k - \eta A^H(Ax_k - y))`),
    'dbp' (Deep Basis Pursuit: :math:`\min \|x - D(x_k)\|` s.t.
    :math:`\|Ax - y\| \le \epsilon` by ADMM) and 'resnet' (:math:`D(A^H y)`).

    With no operator, maps or masks, the estimator treats ``X`` and ``y`` as real
    measurements and signals, learns a linear forward model :math:`X \approx y A^\top`
    by least squares, and reconstructs ``y`` with 1-D "images" -- so it works on any
    regression data (and in scikit-learn's common checks).

    MRI data layout (complex values as real arrays, real part first): ``X`` is k-space of shape
    (n, 2 * n_coils * H * W), the flattening of (n, 2, n_coils, H, W); ``y`` are images
    (n, 2 * H * W). Per-sample coil ``maps`` (n, 2, n_coils, H, W) and sampling ``masks``
    (n, H, W) are ``fit``/``predict`` keyword arguments, routed as metadata
    (``set_fit_request(maps=True, masks=True)``), so one model serves other masks and
    accelerations. :func:`skinverse.datasets.make_mri_data` produces this layout.

    Parameters
    ----------
    operator : LinearOperator or None, default=None
        The forward model; ``None`` is :class:`~skinverse.operators.MultiCoilMRI` with the
        per-sample maps and masks. A given operator may still take per-sample ``masks``
        (e.g. :class:`~skinverse.operators.SubsampledFourier` without a fixed mask).
    method : {'modl', 'cg-sense', 'dbp', 'pgd', 'resnet'}, default='modl'
    denoiser : {'resnet', 'dncnn', 'unet'}, default='resnet'
    n_unrolls : int, default=5
    share_weights : bool, default=True
        One denoiser for every unroll (MoDL) or one per unroll.
    lam : float, default=0.05
        Initial :math:`\lambda` (data-consistency weight; ADMM penalty for 'dbp').
    learn_lam : bool, default=True
    cg_max_iter : int, default=10
    cg_tol : float, default=1e-6
    admm_iter : int, default=5
        ADMM iterations per unroll ('dbp').
    width : int, default=32
        Channels of the denoiser.
    depth : int, default=4
        Residual blocks (ResNet), layers (DnCNN) or scales (U-Net).
    mixed_precision : {'bf16', 'fp16'} or None, default=None
        Run the denoiser under ``torch.autocast`` (fp16 with loss scaling on CUDA); the
        operator, conjugate gradients and the loss stay in ``dtype``.
    {shared_parameters}

    Attributes
    ----------
    lam_ : float
        The learned (or fixed) :math:`\lambda`.
    cg_iters_ : list of float
        Mean conjugate-gradient iterations per solve, per epoch.
    image_shape_ : tuple
    epsilon_ : float
        Data-consistency radius of 'dbp' (mean norm of the training noise).
    {shared_attributes}

    References
    ----------
    H. K. Aggarwal, M. P. Mani, M. Jacob, "MoDL: Model-Based Deep Learning Architecture for
    Inverse Problems", IEEE Trans. Med. Imaging 38(2), 2019.
    J. I. Tamir, S. X. Yu, M. Lustig, "Unsupervised Deep Basis Pursuit", 2019.
    K. P. Pruessmann et al., "SENSE: sensitivity encoding for fast MRI", MRM 42, 1999.

    Examples
    --------
    >>> from skinverse.datasets import make_mri_data, make_phantoms
    >>> from skinverse.unrolled import UnrolledRegressor
    >>> X, y, maps, masks = make_mri_data(make_phantoms(40, 16, random_state=0), n_coils=4,
    ...                                   acceleration=2, random_state=0)
    >>> sense = UnrolledRegressor(method="cg-sense", lam=1e-3, cg_max_iter=30, max_epochs=2,
    ...                           random_state=0)
    >>> sense.fit(X, y, maps=maps, masks=masks).score(X, y, maps=maps, masks=masks) > 20
    True
    """

    _parameter_constraints = {
        **BaseTorchEstimator._parameter_constraints,
        "operator": [None, HasMethods(["forward", "adjoint"])],
        "method": [StrOptions({"modl", "cg-sense", "dbp", "pgd", "resnet"})],
        "denoiser": [StrOptions(set(_DENOISERS))],
        "n_unrolls": [Interval(Integral, 1, None, closed="left")],
        "share_weights": ["boolean"],
        "lam": [Interval(Real, 0, None, closed="neither")],
        "learn_lam": ["boolean"],
        "cg_max_iter": [Interval(Integral, 1, None, closed="left")],
        "cg_tol": [Interval(Real, 0, None, closed="left")],
        "admm_iter": [Interval(Integral, 1, None, closed="left")],
        "width": [Interval(Integral, 1, None, closed="left")],
        "depth": [Interval(Integral, 1, None, closed="left")],
        "mixed_precision": [None, StrOptions({"bf16", "fp16"})],
    }

    def __init__(
        self, *, operator=None, method="modl", denoiser="resnet", n_unrolls=5,
        share_weights=True, lam=0.05, learn_lam=True, cg_max_iter=10, cg_tol=1e-6,
        admm_iter=5, width=32, depth=4, mixed_precision=None, max_epochs=50, batch_size="auto",
        learning_rate=1e-3, optimizer="adam", alpha=0.0, lr_schedule=None, grad_clip=None,
        early_stopping=False, validation_fraction=0.1, n_iter_no_change=10, tol=1e-4,
        warm_start=False, random_state=None, device="auto", dtype="float32", verbose=0,
        callbacks=None, log_dir=None, checkpoint_dir=None,
    ):
        self.operator = operator
        self.method = method
        self.denoiser = denoiser
        self.n_unrolls = n_unrolls
        self.share_weights = share_weights
        self.lam = lam
        self.learn_lam = learn_lam
        self.cg_max_iter = cg_max_iter
        self.cg_tol = cg_tol
        self.admm_iter = admm_iter
        self.width = width
        self.depth = depth
        self.mixed_precision = mixed_precision
        super().__init__(**shared_params(locals()))

    # ------------------------------------------------------------------ data
    def _side_information(self, n, maps, masks, reset):
        """Validate per-sample maps and masks; return them and (image_shape, kspace_shape)."""
        side = {}
        if maps is not None:
            maps = np.asarray(maps, dtype=np.float64)
            if maps.ndim != 5 or maps.shape[0] != n or maps.shape[1] != 2:
                raise ValueError(f"maps must have shape (n_samples={n}, 2, n_coils, H, W) (real "
                                 f"and imaginary parts), got {maps.shape}.")
            side["maps"] = maps
        if masks is not None:
            masks = np.asarray(masks, dtype=np.float64)
            if masks.ndim != 3 or masks.shape[0] != n:
                raise ValueError(f"masks must have shape (n_samples={n}, H, W), got "
                                 f"{masks.shape}.")
            if not np.all((masks == 0) | (masks == 1)):
                raise ValueError("masks must hold only 0 and 1.")
            if np.any(masks.reshape(n, -1).sum(axis=1) == 0):
                raise ValueError("a mask has no samples: every mask must sample k-space.")
            side["masks"] = masks
        op = self.operator
        if op is None and maps is None and masks is None:
            return side, None, None  # real data with a learned linear operator
        if op is None:
            if maps is None or masks is None:
                raise ValueError("Without an operator, multi-coil MRI needs maps=(n, 2, "
                                 "n_coils, H, W) and masks=(n, H, W) in fit and predict.")
            image_shape, kspace_shape = maps.shape[3:], maps.shape[2:]
        else:
            image_shape, kspace_shape = tuple(op.input_shape), tuple(op.output_shape)
        if masks is not None and tuple(masks.shape[1:]) != tuple(image_shape):
            raise ValueError(f"masks have image shape {masks.shape[1:]} but the maps or the "
                             f"operator have {tuple(image_shape)}.")
        if not reset and self._real_data:
            raise ValueError("This model was fitted on real data without maps or masks.")
        if not reset and tuple(image_shape) != self.image_shape_:
            raise ValueError(f"images of shape {tuple(image_shape)} differ from the fitted "
                             f"{self.image_shape_}.")
        return side, tuple(image_shape), tuple(kspace_shape)

    def _validate_fit_data(self, X, y, *, reset, maps=None, masks=None, sample_weight=None):
        X, y = validate_data(self, X, y, reset=reset, dtype=FLOAT_DTYPES, multi_output=True,
                             y_numeric=True)
        y_2d = y.reshape(len(y), -1).astype(X.dtype, copy=False)  # integer targets too
        side, image_shape, kspace_shape = self._side_information(len(X), maps, masks, reset)
        real = image_shape is None
        if real:  # generic regression data: real images (1, d), measurements (m,)
            image_shape, kspace_shape = (y_2d.shape[1],), (X.shape[1],)
        else:
            self._check_sizes(X.shape[1], y_2d.shape[1], image_shape, kspace_shape)
        if reset:
            self.image_shape_, self._kspace_shape = image_shape, kspace_shape
            self.n_outputs_, self._real_data, self._y_is_1d = y_2d.shape[1], real, y.ndim == 1
        elif (image_shape, kspace_shape) != (self.image_shape_, self._kspace_shape):
            raise ValueError("X or y differ in shape from the data the model was fitted on.")
        y = y_2d
        return {"X": X, "y": y, **side,
                "sample_weight": normalized_sample_weight(sample_weight, X)}

    @staticmethod
    def _check_sizes(n_x, n_y, image_shape, kspace_shape):
        if n_x != 2 * int(np.prod(kspace_shape)):
            raise ValueError(f"X has {n_x} features; k-space of shape {kspace_shape} needs "
                             f"2 * {int(np.prod(kspace_shape))} (real and imaginary parts).")
        if n_y != 2 * int(np.prod(image_shape)):
            raise ValueError(f"y has {n_y} features; images of shape {image_shape} need "
                             f"2 * {int(np.prod(image_shape))} (real and imaginary parts).")

    # ------------------------------------------------------------------ module
    def _build_module(self, data):
        if self._real_data:
            solution, *_ = np.linalg.lstsq(data["y"], data["X"], rcond=None)
            self.operator_ = MatrixOperator(solution.T)  # X ~ y A^T, least squares
        elif self.operator is None:
            self.operator_ = MultiCoilMRI(image_shape=self.image_shape_,
                                          n_coils=self._kspace_shape[0])
        else:
            self.operator_ = copy.deepcopy(self.operator)
        denoisers = torch.nn.ModuleList()
        if self.method != "cg-sense":
            count = 1 if self.share_weights or self.method == "resnet" else self.n_unrolls
            for _ in range(count):
                denoisers.append(_DENOISERS[self.denoiser](2, self.width, self.depth))
        self.epsilon_ = self._noise_radius(data) if self.method == "dbp" else None
        # Gradient steps of 1/||A||^2 are stable (the MRI operators have ||A|| <= 1).
        step = 1.0
        if self._real_data:
            step = 1.0 / self.operator_.norm(n_iter=50) ** 2
        module = UnrolledModule(self.method, denoisers, self.n_unrolls, self.lam,
                                self.learn_lam, self.cg_max_iter, self.cg_tol, self.admm_iter,
                                self.epsilon_, step)
        module.autocast_dtype = {None: None, "bf16": torch.bfloat16,
                                 "fp16": torch.float16}[self.mixed_precision]
        return module

    def _to_complex(self, flat, shape):
        if self._real_data:
            return flat.reshape(flat.shape[0], *shape).to(
                torch.complex128 if flat.dtype == torch.float64 else torch.complex64)
        return _complex(flat, shape)

    def _to_real(self, images):
        return images.real.reshape(images.shape[0], -1) if self._real_data else _real(images)

    def _noise_radius(self, data):
        """Mean norm of the measured noise ``||A x - y||`` over the training pairs."""
        tensors = super()._to_tensors({k: v for k, v in data.items() if v is not None})
        operator = copy.deepcopy(self.operator_).to(self.device_, torch.float64)
        with torch.no_grad():
            images = self._to_complex(tensors["y"].double(), self.image_shape_)
            kspace = self._to_complex(tensors["X"].double(), self._kspace_shape)
            residual = operator.forward(images, **self._params(tensors)) - kspace
        return float(residual.abs().pow(2).reshape(len(images), -1).sum(dim=1).sqrt().mean())

    def _initialize(self, data):
        state = super()._initialize(data)
        self.operator_.to(self.device_, self._torch_dtype)
        return state

    def _history_attributes(self):
        return {"cg_iters_": "cg_iterations"}

    @staticmethod
    def _params(tensors):
        params = {}
        if tensors.get("maps") is not None:
            maps = tensors["maps"]
            params["maps"] = torch.complex(maps[:, 0], maps[:, 1])
        if tensors.get("masks") is not None:
            params["mask"] = tensors["masks"]
        return params

    def _forward(self, X, maps=None, masks=None):
        kspace = self._to_complex(X, self._kspace_shape)
        images = self.module_(kspace, self.operator_, self._params({"maps": maps, "masks": masks}))
        return self._to_real(images)

    def _compute_loss(self, batch):
        pred = self._forward(batch["X"], batch.get("maps"), batch.get("masks"))
        errors = (pred - batch["y"]).pow(2).mean(dim=1)
        weights = batch.get("sample_weight")
        return errors.mean() if weights is None else (weights * errors).mean()

    def _run_epoch(self, train, batch_hooks):
        self.module_.cg_iterations.clear()
        loss = super()._run_epoch(train, batch_hooks)
        iterations = self.module_.cg_iterations
        self.training_state_.history["cg_iterations"].append(
            float(np.mean(iterations)) if iterations else 0.0)
        self.module_.cg_iterations.clear()
        self._monitor = train
        return loss

    def _validation_score(self, val):
        with torch.no_grad():
            pred = to_numpy(self._forward(val["X"], val.get("maps"), val.get("masks")))
        return self._psnr(to_numpy(val["y"]), pred)

    def _psnr(self, truth, pred):
        if self._real_data:
            return psnr(truth.reshape(len(truth), -1), pred.reshape(len(pred), -1))
        return psnr(_magnitudes(truth, self.image_shape_), _magnitudes(pred, self.image_shape_))

    def _fit(self, X, y, **kwargs):
        super()._fit(X, y, **kwargs)
        self.lam_ = float(self.module_.lam.detach())
        self._monitor = None
        return self

    # ------------------------------------------------------------------ public API
    @_fit_context(prefer_skip_nested_validation=True)
    def fit(self, X, y, maps=None, masks=None, sample_weight=None):
        """Train on k-space ``X`` and images ``y``.

        Parameters
        ----------
        X : array-like of shape (n_samples, 2 * n_coils * H * W)
        y : array-like of shape (n_samples, 2 * H * W)
        maps : array-like of shape (n_samples, 2, n_coils, H, W), default=None
        masks : array-like of shape (n_samples, H, W), default=None
        sample_weight : array-like of shape (n_samples,), default=None

        Returns
        -------
        self : object
        """
        return self._fit(X, y, incremental=False, maps=maps, masks=masks,
                         sample_weight=sample_weight)

    def predict(self, X, maps=None, masks=None):
        """Reconstruct images from k-space ``X``.

        Parameters
        ----------
        X : array-like of shape (n_samples, 2 * n_coils * H * W)
        maps : array-like of shape (n_samples, 2, n_coils, H, W), default=None
        masks : array-like of shape (n_samples, H, W), default=None

        Returns
        -------
        images : ndarray of shape (n_samples, 2 * H * W)
            Real and imaginary parts, in the float dtype of ``X``.
        """
        check_is_fitted(self)
        side, _, _ = self._side_information(_num_samples(X), maps, masks, reset=False)
        outputs, dtype = self._predict_outputs(X, side)
        self.module_.cg_iterations.clear()
        pred = to_numpy(outputs, dtype)
        return pred.ravel() if self._real_data and self._y_is_1d else pred

    def score(self, X, y, maps=None, masks=None, sample_weight=None):
        """Mean PSNR (dB) of the magnitude images, each against its own maximum.

        Parameters
        ----------
        X, y, maps, masks : as in :meth:`fit`
        sample_weight : ignored

        Returns
        -------
        score : float
        """
        pred = self.predict(X, maps=maps, masks=masks)
        return self._psnr(np.asarray(y, dtype=np.float64), pred)

    def _log_to_tensorboard(self, writer, epoch):
        """lam, CG iterations and image panels of one training example."""
        writer.add_scalar("lam", float(self.module_.lam.detach()), epoch)
        writer.add_scalar("cg_iterations", self.cg_iters_[-1], epoch)
        sample = {k: v[:1] for k, v in (self._monitor or {}).items() if v is not None}
        if not sample:
            return
        with torch.no_grad():
            pred = self._forward(sample["X"], sample.get("maps"), sample.get("masks"))
            kspace = _complex(sample["X"], self._kspace_shape)
            zero_filled = self.operator_.adjoint(kspace, **self._params(sample))
        shape = self.image_shape_
        panels = {
            "zero_filled": zero_filled.abs()[0],
            "prediction": _complex(pred, shape).abs()[0],
            "ground_truth": _complex(sample["y"], shape).abs()[0],
        }
        panels["error"] = (panels["prediction"] - panels["ground_truth"]).abs()
        truth = to_numpy(panels["ground_truth"]).reshape(1, -1)
        guess = to_numpy(panels["prediction"]).reshape(1, -1)
        writer.add_scalar("psnr/train_example", psnr(truth, guess), epoch)
        if len(shape) == 2:
            writer.add_scalar("ssim/train_example", ssim(truth, guess, image_shape=shape), epoch)
        for name, image in panels.items():
            image = image / image.max().clamp_min(1e-12)
            writer.add_image(f"images/{name}", image[None].float().cpu(), epoch)

    def __getstate__(self):
        state = super().__getstate__()
        state.pop("_monitor", None)
        if state.get("operator_") is not None and self.device_.type != "cpu":
            state["operator_"] = copy.deepcopy(self.operator_).to("cpu")
        return state

    def __setstate__(self, state):
        super().__setstate__(state)
        if getattr(self, "operator_", None) is not None:
            self.operator_.to(self.device_)

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.target_tags.multi_output = True
        tags.target_tags.single_output = False
        return tags
