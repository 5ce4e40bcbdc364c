"""UnrolledRegressor: model-based deep reconstruction (MoDL, CG-SENSE, Deep Basis Pursuit,
unrolled proximal gradient, ResNet) as a scikit-learn estimator."""

import copy
import math
from numbers import Integral, Real

import numpy as np
import torch
from sklearn.base import RegressorMixin, _fit_context
from sklearn.utils._param_validation import HasMethods, Interval, StrOptions
from sklearn.utils.validation import _num_samples, check_is_fitted, validate_data

from .._base import (
    FLOAT_DTYPES,
    BaseTorchEstimator,
    doc_defaults,
    fill_doc,
    normalized_sample_weight,
    shared_params,
    to_numpy,
)
from .._base._device import autocast_dtype
from .._base._sources import LazyPlan
from ..datasets._container import MultiCoilData, flat_to_images, images_to_flat
from ..nn import DnCNN, ResNetDenoiser, UNet
from ..operators import MultiCoilMRI
from ._inputs import check_maps_and_masks, check_sizes, is_real_operator
from ._losses import LOSSES, per_sample_loss
from ._module import RealPartsOperator, UnrolledModule
from ._report import (
    complex_images,
    first_example,
    log_panels,
    real_parts,
    score_psnr,
    validation_psnr,
)
from ._scale import (
    BACKWARD_TOL,
    DOC_NOTES,
    PLATEAU_FACTOR,
    VALIDATION_SMOOTHING,
    cg_tolerance,
    lam_parameters,
    least_squares_operator,
    noise_radius,
    operator_norm_squared,
    signal_scale,
)
from ._threshold import fitted_threshold

_DENOISERS = {"resnet": ResNetDenoiser, "dncnn": DnCNN, "unet": UNet}
MIN_VALIDATION = 10  # early_stopping='auto' validates on at least this many samples
TOL_DB = 0.02  # tol='auto' with validation: gains of validation PSNR below this (dB)


@doc_defaults(
    early_stopping="'auto'", lr_schedule="'plateau'", tol="'auto'",
    types={"early_stopping": "'auto' or bool", "tol": "'auto' or float"},
    notes=DOC_NOTES,
)
@fill_doc(max_epochs=50, learning_rate=0.001, streams=True,
          n_iter_no_change=5,
          batch_auto="``min(8, n_samples)`` for images (the activations of every unroll "
                     "are kept for the backward pass: ~58 MB per 64 x 64 image at the "
                     "default width, so ~0.5 GB a batch), "
                     "``min(200, n_samples)`` with ``operator='lstsq'``")
class UnrolledRegressor(RegressorMixin, BaseTorchEstimator):
    r"""Model-based deep reconstruction: a learned denoiser alternating with data
    consistency through a forward operator (multi-coil MRI by default).

    .. math::

        \text{MoDL:}\quad x_{k+1} = (A^H A + \lambda I)^{-1}\big(A^H y + \lambda
        D_\theta(x_k)\big), \qquad x_0 = A^H y / \|A\|^2,

    the inverse by conjugate gradients (differentiated through its iterations). Other
    ``method`` values: 'cg-sense' (:math:`(A^H A + \lambda I)^{-1} A^H y` with a learnable
    :math:`\lambda`, no network), 'pgd' (:math:`x_{k+1} = D(x_k - \eta A^H(Ax_k - y))`),
    'dbp' (Deep Basis Pursuit: :math:`\min \|x - D(x_k)\|` s.t.
    :math:`\|Ax - y\| \le \epsilon` by ADMM) and 'resnet' (:math:`D(A^H y)`).

    MRI data come in either of two layouts:

    * as users have them: a :class:`~skinverse.datasets.MultiCoilData` ``X`` (complex
      k-space and coil maps (n, n_coils, H, W), masks (n, H, W)) and complex images ``y``
      (n, H, W). Maps and masks travel inside ``X``, so ``cross_val_score``,
      ``GridSearchCV`` and ``Pipeline`` split them with the samples and need no routing;
      ``predict`` then returns complex images (n, H, W);
    * flattened real arrays (real part first): k-space ``X`` (n, 2 * n_coils * H * W),
      images ``y`` (n, 2 * H * W), with per-sample ``maps`` (n, 2, n_coils, H, W) and
      ``masks`` (n, H, W) as ``fit``/``predict`` keyword arguments, routed as metadata
      (``set_fit_request(maps=True, masks=True)``).

    :func:`skinverse.datasets.make_mri_data` produces both. Without an operator, maps or
    masks the estimator has no forward model and says so; ``operator='lstsq'`` instead
    treats ``X`` and ``y`` as real measurements and signals, learns a linear forward model
    :math:`X \approx y A^\top` by least squares and reconstructs ``y`` with 1-D "images".

    Parameters
    ----------
    operator : LinearOperator, 'lstsq' or None, default=None
        The forward model; ``None`` is :class:`~skinverse.operators.MultiCoilMRI` with the
        per-sample maps and masks (an error without them). A given operator may still take
        per-sample ``masks`` (e.g. :class:`~skinverse.operators.SubsampledFourier` without
        a fixed mask). A real operator (e.g. :class:`~skinverse.operators.Blur`) given
        ``X`` and ``y`` of its own sizes -- one value per entry, no imaginary parts --
        reconstructs real images (deblurring, inpainting); with twice those sizes the
        data are real and imaginary parts, as for MRI. ``'lstsq'``: a dense operator
        fitted by least squares to real ``(X, y)`` pairs (generic regression data; no maps
        or masks).
    method : {'modl', 'cg-sense', 'dbp', 'pgd', 'resnet'}, default='modl'
        The reconstruction (formulas above): MoDL alternates the denoiser with an exact
        data-consistency solve; CG-SENSE is the classical baseline (only :math:`\lambda`
        is learned); 'dbp' constrains the data error to the noise radius; 'pgd' takes
        gradient steps (learned, starting at :math:`1/\|A\|^2`) between denoisers; 'resnet' denoises the
        adjoint image once, with no physics after it.
    denoiser : {'resnet', 'dncnn', 'unet'}, default='resnet'
        The network :math:`D_\theta` (real and imaginary parts as two channels): residual
        blocks, DnCNN (a plain convolution stack predicting the noise) or a U-Net.
    n_unrolls : int, default=5
        Iterations of the unrolled scheme (denoiser + data consistency).
    share_weights : bool, default=True
        One denoiser for every unroll (MoDL) or one per unroll.
    lam : 'auto' or float, default='auto'
        Initial :math:`\lambda` (data-consistency weight; ADMM penalty :math:`\rho` for
        'dbp'). ``'auto'`` derives it from the operator so that the balance of data term
        and prior does not change when the operator is scaled: :math:`\lambda = 0.05\,
        \|A\|^2` (:math:`\rho = 0.05 / \|A\|^2` for 'dbp'), where :math:`\|A\|^2`, the
        largest eigenvalue of :math:`A^H A`, is computed once per operator by power
        iteration and cached (for an operator with per-sample maps or masks: the median
        over the first 8 training samples). For multi-coil MRI with an orthonormal FFT and
        :math:`\sum_c |S_c|^2 = 1`, :math:`\|A\| \approx 1` and ``'auto'`` is about 0.05.
        A learned :math:`\lambda` then moves in units of :math:`\|A\|^2`. A number is
        used as it is. Whatever ``lam``, the scheme starts from :math:`A^H y / \|A\|^2`
        and 'pgd' steps by :math:`1 / \|A\|^2`, so that scaling the operator and ``X``
        by :math:`c` leaves the reconstruction unchanged.
    learn_lam : bool, default=True
        Learn :math:`\lambda` with the network (kept positive); ``False`` keeps ``lam``.
    cg_max_iter : int, default=10
        Conjugate-gradient iterations per data-consistency solve (at most).
    cg_tol : 'auto' or float, default='auto'
        Relative residual :math:`\|r\| / \|b\|` at which a sample's conjugate gradients
        stop (relative, so free of the operator's scale). ``'auto'`` is
        :math:`\sqrt{\varepsilon}` of ``dtype``: 3.5e-4 in float32, 1.5e-8 in float64
        (below it the float32 residual is rounding noise, not progress); 1e-3 when the
        denoiser runs in bf16 (:math:`\varepsilon_\mathrm{bf16}/8`: its output, in the
        right-hand side, is rounded to 2**-8).
    cg_backward : {'implicit', 'unrolled'}, default='implicit'
        Gradient of the data-consistency solves: 'implicit' runs one more CG solve of
        :math:`(A^H A + \lambda I)` in the backward pass (training memory flat in
        ``cg_max_iter``, about 2x faster), to a relative residual of 0.1 (or ``cg_tol``
        if larger): a gradient within ~4 % of the exact one, against a scatter of ~20 %
        between mini-batches (MRI phantoms, ``bench_unrolled_gradient.py``), in 6
        iterations instead of 10; 'unrolled' back-propagates through the CG iterations
        (the reference).
    checkpoint_denoiser : bool, default=False
        Recompute the denoiser's activations in the backward pass instead of keeping
        them for every unroll: about 2.5x less training memory for about 1.4x the time.
    admm_iter : int, default=5
        ADMM iterations per unroll ('dbp').
    width : int, default=32
        Channels of the denoiser.
    depth : int, default=4
        Residual blocks (ResNet), layers (DnCNN) or scales (U-Net).
    loss : {'ssim+l1', 'mse', 'l1', 'ssim'}, default='ssim+l1'
        Training loss per image: :math:`0.84\,(1 - \mathrm{SSIM}) + 0.16\,\|\hat x -
        x\|_1 / (dR)` of the magnitude images and the reference's range :math:`R` (Zhao et
        al. 2017); the squared error of the real and imaginary parts; their absolute error
        over :math:`R`; or :math:`1 -` SSIM alone (SSIM as :func:`skinverse.metrics.ssim`).
        Every option is free of the images' scale. The default gave both the higher PSNR
        and the higher SSIM than ``'mse'`` in ``bench_unrolled.py`` (MRI phantoms: 33.91
        against 32.78 dB, SSIM 0.763 against 0.725) and ``bench_unrolled_deblur.py``
        (photographs: 30.39 against 28.59 dB, 0.786 against 0.675); the squared error
        leaves a faint texture in flat regions that costs SSIM.
    output_threshold : 'auto' or float >= 0, default='auto'
        :math:`\tau` of a soft threshold of the output's magnitudes, :math:`\hat x\,
        \max(|\hat x| - \tau, 0)/|\hat x|`: it removes the noise the last data
        consistency puts back into an empty background. ``'auto'``: the value, among 0
        and 36 fractions (1e-4 to 0.3) of the references' median peak that do not lower
        the PSNR of the validation images (training images without a split), of lowest
        mean ``loss`` there if it lowers it by 1 %, when training ends; 0 for
        'cg-sense'. A float: that :math:`\tau` in the images' units.
    mixed_precision : {'auto', 'bf16', 'fp16'} or None, default='auto'
        Run the denoiser under ``torch.autocast`` (fp16 with loss scaling on CUDA); the
        operator, conjugate gradients, the output and the loss stay in ``dtype``.
        ``'auto'``: bf16 for ``dtype='float32'`` where the device computes it natively
        (CUDA with bf16, a CPU with AVX512-BF16 or AMX), full precision elsewhere.
    {shared_parameters}

    Attributes
    ----------
    lam_ : float
        The learned (or fixed) :math:`\lambda` (:math:`\rho` for 'dbp'), in the units
        of the operator.
    operator_norm_ : float
        :math:`\|A\|`, which ``lam='auto'``, the start and the 'pgd' step follow.
    output_threshold_ : float
        The :math:`\tau` of ``output_threshold`` in use.
    cg_iters_ : list of float
        Mean conjugate-gradient iterations per solve, per epoch.
    signal_scale_ : float
        The training images' median peak magnitude: the denoiser sees images in its units.
    validation_psnr_ : list of float
        Each epoch's validation PSNR (the loop follows its average, ``validation_scores_``).
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
    H. Zhao, O. Gallo, I. Frosio, J. Kautz, "Loss functions for image restoration with
    neural networks", IEEE Trans. Comput. Imaging 3(1), 2017.

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

    _split_in_place = True  # the validation split does not copy the images
    _model_params = (*BaseTorchEstimator._model_params, "operator", "method", "denoiser",
                     "n_unrolls", "share_weights", "width", "depth")
    _parameter_constraints = {
        **BaseTorchEstimator._parameter_constraints,
        "operator": [None, StrOptions({"lstsq"}), HasMethods(["forward", "adjoint"])],
        "method": [StrOptions({"modl", "cg-sense", "dbp", "pgd", "resnet"})],
        "denoiser": [StrOptions(set(_DENOISERS))],
        "n_unrolls": [Interval(Integral, 1, None, closed="left")],
        "share_weights": ["boolean"],
        "lam": [StrOptions({"auto"}), Interval(Real, 0, None, closed="neither")],
        "learn_lam": ["boolean"],
        "cg_max_iter": [Interval(Integral, 1, None, closed="left")],
        "cg_tol": [StrOptions({"auto"}), Interval(Real, 0, None, closed="left")],
        "admm_iter": [Interval(Integral, 1, None, closed="left")],
        "cg_backward": [StrOptions({"implicit", "unrolled"})],
        "checkpoint_denoiser": ["boolean"],
        "width": [Interval(Integral, 1, None, closed="left")],
        "depth": [Interval(Integral, 1, None, closed="left")],
        "mixed_precision": [None, StrOptions({"auto", "bf16", "fp16"})],
        "loss": [StrOptions(set(LOSSES))],
        "output_threshold": [StrOptions({"auto"}), Interval(Real, 0, None, closed="left")],
        "early_stopping": [StrOptions({"auto"}), "boolean"],
        "tol": [StrOptions({"auto"}), Interval(Real, 0, None, closed="left")],
    }

    def __init__(
        self, *, operator=None, method="modl", denoiser="resnet", n_unrolls=5,
        share_weights=True, lam="auto", learn_lam=True, cg_max_iter=10, cg_tol="auto",
        cg_backward="implicit", checkpoint_denoiser=False, admm_iter=5, width=32, depth=4,
        loss="ssim+l1", output_threshold="auto", mixed_precision="auto", max_epochs=50,
        batch_size="auto", learning_rate=1e-3, optimizer="adam", alpha=0.0, lr_schedule="plateau",
        grad_clip=None, early_stopping="auto", validation_fraction=0.1, n_iter_no_change=5,
        tol="auto",
        warm_start=False, random_state=None, device="auto", dtype="float32", verbose=0,
        callbacks=None, log_dir=None, checkpoint_dir=None, num_workers=0,
    ):
        self.num_workers = num_workers
        self.loss = loss
        self.output_threshold = output_threshold
        self.operator = operator
        self.method = method
        self.denoiser = denoiser
        self.n_unrolls = n_unrolls
        self.share_weights = share_weights
        self.lam = lam
        self.learn_lam = learn_lam
        self.cg_max_iter = cg_max_iter
        self.cg_tol = cg_tol
        self.cg_backward = cg_backward
        self.checkpoint_denoiser = checkpoint_denoiser
        self.admm_iter = admm_iter
        self.width = width
        self.depth = depth
        self.mixed_precision = mixed_precision
        super().__init__(**shared_params(locals()))

    # ------------------------------------------------------------------ data
    def _side_information(self, n, maps, masks, reset):
        """Validate per-sample maps and masks; return them and (image_shape, kspace_shape)."""
        side = check_maps_and_masks(n, maps, masks)
        maps, masks = side.get("maps"), side.get("masks")
        op = self.operator
        if isinstance(op, str):  # 'lstsq': real data with a learned linear operator
            if maps is not None or masks is not None:
                raise ValueError("operator='lstsq' learns a dense linear model of real data; "
                                 "it takes no maps or masks.")
            return side, None, None
        if op is None and maps is None and masks is None:
            raise ValueError(
                "UnrolledRegressor needs a forward model: pass multi-coil MRI data as a "
                "skinverse.datasets.MultiCoilData (k-space, maps and masks together), or "
                "maps=(n, 2, n_coils, H, W) and masks=(n, H, W) with flattened k-space, or "
                "an operator=...; operator='lstsq' learns a dense linear model of real "
                "(X, y) pairs instead.")
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
        if not reset and self._real_data and maps is not None:
            raise ValueError("This model was fitted on real images; it takes no coil maps.")
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
        elif self._real_layout(X.shape[1], y_2d.shape[1], image_shape, kspace_shape):
            real = True  # a real operator (e.g. a blur) on real images
        else:
            check_sizes(X.shape[1], y_2d.shape[1], image_shape, kspace_shape,
                        real_operator=is_real_operator(self.operator))
        if reset:
            self.image_shape_, self._kspace_shape = image_shape, kspace_shape
            self.n_outputs_, self._real_data, self._y_is_1d = y_2d.shape[1], real, y.ndim == 1
        elif (image_shape, kspace_shape) != (self.image_shape_, self._kspace_shape):
            raise ValueError("X or y differ in shape from the data the model was fitted on.")
        y = y_2d
        return {"X": X, "y": y, **side,
                "sample_weight": normalized_sample_weight(sample_weight, X)}

    def _real_layout(self, n_x, n_y, image_shape, kspace_shape):
        """A given real operator with X and y of its own sizes (one value per entry, no
        imaginary parts): real images, e.g. deblurring."""
        if not is_real_operator(self.operator):
            return False
        return n_x == int(np.prod(kspace_shape)) and n_y == int(np.prod(image_shape))

    # ------------------------------------------------------------------ module
    def _build_module(self, data):
        if isinstance(self.operator, str):
            self.operator_ = least_squares_operator(data["X"], data["y"])
        elif self.operator is None:
            self.operator_ = MultiCoilMRI(image_shape=self.image_shape_,
                                          n_coils=self._kspace_shape[0])
        elif self._real_data:
            self.operator_ = RealPartsOperator(copy.deepcopy(self.operator))
        else:
            self.operator_ = copy.deepcopy(self.operator)
        denoisers = torch.nn.ModuleList()
        if self.method != "cg-sense":
            count = 1 if self.share_weights or self.method == "resnet" else self.n_unrolls
            for _ in range(count):
                denoisers.append(_DENOISERS[self.denoiser](2, self.width, self.depth))
        n = data.source.n if isinstance(data, LazyPlan) else len(data["X"])
        self._data_validates = round(self.validation_fraction * n) >= MIN_VALIDATION
        self.epsilon_ = noise_radius(self, data) if self.method == "dbp" else None
        norm_squared = operator_norm_squared(self, data)
        self.operator_norm_ = math.sqrt(norm_squared)
        lam, scale = lam_parameters(self.lam, self.method, norm_squared)
        low = autocast_dtype(self.mixed_precision, self.device_, self._torch_dtype)
        tol = cg_tolerance(self.cg_tol, self._torch_dtype, low if denoisers else None)
        module = UnrolledModule(self.method, denoisers, self.n_unrolls, lam, self.learn_lam,
                                self.cg_max_iter, tol, self.admm_iter, self.epsilon_,
                                lam_scale=scale, norm_squared=norm_squared)
        module.autocast_dtype, module.cg_backward = low, self.cg_backward
        module.cg_backward_tol = max(tol, BACKWARD_TOL)
        module.checkpoint_denoiser = self.checkpoint_denoiser
        self.signal_scale_ = module.signal_scale = signal_scale(self, data)
        return module

    def _to_complex(self, flat, shape):
        if self._real_data:
            return flat.reshape(flat.shape[0], *shape).to(
                torch.complex128 if flat.dtype == torch.float64 else torch.complex64)
        return complex_images(flat, shape)

    def _to_real(self, images):
        return images.real.reshape(images.shape[0], -1) if self._real_data else real_parts(images)

    def _initialize(self, data):
        state = super()._initialize(data)
        self.operator_.to(self.device_, self._torch_dtype)
        return state

    def _fit_loop(self, state, train, val, n_epochs, **kwargs):
        """Train with the output threshold off, then choose it (``output_threshold``)."""
        self.module_.output_threshold = 0.0
        super()._fit_loop(state, train, val, n_epochs, **kwargs)
        tau = fitted_threshold(self, val if val is not None else train)
        self.output_threshold_ = self.module_.output_threshold = tau

    def _history_attributes(self):
        return {"cg_iters_": "cg_iterations", "validation_psnr_": "validation_psnr"}

    def _effective_batch_size(self, n):
        """'auto': 8 images (every unroll's activations are kept for the backward pass:
        ~58 MB per 64x64 image), ``min(200, n)`` for ``operator='lstsq'``."""
        if self.batch_size == "auto" and not isinstance(self.operator, str):
            return min(8, n)
        return super()._effective_batch_size(n)

    @staticmethod
    def _params(tensors):
        maps, masks = tensors.get("maps"), tensors.get("masks")
        params = {} if maps is None else {"maps": torch.complex(maps[:, 0], maps[:, 1])}
        return params if masks is None else {**params, "mask": masks}

    def _forward(self, X, maps=None, masks=None):
        kspace = self._to_complex(X, self._kspace_shape)
        images = self.module_(kspace, self.operator_, self._params({"maps": maps, "masks": masks}))
        return self._to_real(images)

    def _compute_loss(self, batch):
        pred = self._forward(batch["X"], batch.get("maps"), batch.get("masks"))
        errors = per_sample_loss(self.loss, pred, batch["y"], self.image_shape_,
                                 complex_images=not self._real_data)
        weights = batch.get("sample_weight")
        return errors.mean() if weights is None else (weights * errors).mean()

    def _run_epoch(self, train, batch_hooks):
        self.module_.cg_iterations.clear()
        loss = super()._run_epoch(train, batch_hooks)
        iterations = self.module_.cg_iterations
        self.training_state_.history["cg_iterations"].append(
            float(np.mean(iterations)) if iterations else 0.0)
        self.module_.cg_iterations.clear()
        if self.log_dir is not None:  # one training example for the TensorBoard panels
            self._monitor = first_example(self, train)
        return loss

    def _stopping_tol(self, validating):
        return self.tol if self.tol != "auto" else (TOL_DB if validating else 1e-4)

    def _plateau_threshold(self):  # the validation PSNR's tol (dB) for the schedule too
        return self._stopping_tol(True) if self._validates() else None

    def _validates(self):
        if self.early_stopping != "auto":
            return bool(self.early_stopping)
        return getattr(self, "_data_validates", False)

    def _may_skip_parameters(self):
        """A learned ``lam`` is unused by the plain denoiser and by gradient steps."""
        return self.method in ("resnet", "pgd") and self.learn_lam

    def _streams(self, source):
        """Lazy data is read batch by batch, except for ``operator='lstsq'`` (the dense
        model is a least-squares fit to all pairs at once)."""
        return not isinstance(self.operator, str)

    _validation_smoothing, _plateau_factor = VALIDATION_SMOOTHING, PLATEAU_FACTOR
    def _validation_score(self, val):
        """PSNR of the validation images, recorded (the loop follows its average)."""
        score = validation_psnr(self, val)
        self.training_state_.history["validation_psnr"].append(score)
        return score

    def _psnr(self, truth, pred, sample_weight=None):
        """PSNR of :meth:`score` (the docstring there gives the formula)."""
        return score_psnr(self._real_data, truth, pred, sample_weight)

    def _fit(self, X, y, **kwargs):
        super()._fit(X, y, **kwargs)
        self.lam_ = float(self.module_.lam.detach())
        self._monitor = None
        return self

    # ------------------------------------------------------------------ public API
    @staticmethod
    def _unpack(X, y, maps, masks):
        """A :class:`MultiCoilData` ``X`` (and complex images ``y``) -> the flat layout."""
        if not isinstance(X, MultiCoilData):
            return X, y, maps, masks
        if maps is not None or masks is not None:
            raise ValueError("X is a MultiCoilData, which carries its own maps and masks; "
                             "do not pass maps= or masks= as well.")
        X, maps, masks = X.flat()
        if y is not None and np.ndim(y) == 3:  # images (n, H, W), complex or real
            y = images_to_flat(y)
        return X, y, maps, masks

    @_fit_context(prefer_skip_nested_validation=True)
    def fit(self, X, y=None, maps=None, masks=None, sample_weight=None):
        """Train on k-space ``X`` and images ``y``.

        Parameters
        ----------
        X : MultiCoilData or array-like of shape (n_samples, 2 * n_coils * H * W)
        y : array-like of shape (n_samples, H, W) (complex) or (n_samples, 2 * H * W)
        maps : array-like of shape (n_samples, 2, n_coils, H, W), default=None
            With flattened ``X`` only.
        masks : array-like of shape (n_samples, H, W), default=None
            With flattened ``X`` only.
        sample_weight : array-like of shape (n_samples,), default=None

        Returns
        -------
        self : object
        """
        X, y, maps, masks = self._unpack(X, y, maps, masks)
        return self._fit(X, y, incremental=False, maps=maps, masks=masks,
                         sample_weight=sample_weight)

    def predict(self, X, maps=None, masks=None):
        """Reconstruct images from k-space ``X``.

        Parameters
        ----------
        X : MultiCoilData or array-like of shape (n_samples, 2 * n_coils * H * W)
        maps : array-like of shape (n_samples, 2, n_coils, H, W), default=None
        masks : array-like of shape (n_samples, H, W), default=None

        Returns
        -------
        images : ndarray of shape (n_samples, H, W) or (n_samples, 2 * H * W)
            Complex images for a :class:`MultiCoilData`; otherwise real and imaginary
            parts, in the float dtype of ``X``.
        """
        check_is_fitted(self)
        container = isinstance(X, MultiCoilData)
        X, _, maps, masks = self._unpack(X, None, maps, masks)
        side, _, _ = self._side_information(_num_samples(X), maps, masks, reset=False)
        outputs, dtype = self._predict_outputs(X, side)
        self.module_.cg_iterations.clear()
        pred = to_numpy(outputs, dtype)
        if container:
            return flat_to_images(pred, self.image_shape_)
        return pred.ravel() if self._real_data and self._y_is_1d else pred

    def score(self, X, y, maps=None, masks=None, sample_weight=None):
        r"""Mean PSNR in dB of the reconstructions (higher is better, unbounded).

        For MRI data, on magnitude images against each reference's peak:

        .. math::

            \mathrm{PSNR}_i = 10 \log_{10} \frac{\max_j |x_{ij}|^2}
            {\frac1d \sum_j (|\hat x_{ij}| - |x_{ij}|)^2},

        averaged over samples with ``sample_weight``. For real data (a real operator
        such as a blur, or ``operator='lstsq'``), the same mean of per-sample PSNRs
        against one range for all, that of ``y`` (its maximum minus its minimum over all
        samples and outputs): :func:`skinverse.metrics.psnr` with ``data_range``, the
        usual figure for images in a known range.

        Parameters
        ----------
        X, y, maps, masks : as in :meth:`fit`
        sample_weight : array-like of shape (n_samples,), default=None

        Returns
        -------
        score : float
        """
        X, y, maps, masks = self._unpack(X, y, maps, masks)
        pred = self.predict(X, maps=maps, masks=masks)
        return self._psnr(np.asarray(y, dtype=np.float64), pred, sample_weight)

    def _log_to_tensorboard(self, writer, epoch):
        log_panels(self, writer, epoch)

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
