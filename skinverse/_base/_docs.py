"""Parameter documentation shared by every estimator built on :class:`BaseTorchEstimator`."""

import re

SHARED_PARAMETERS = """\
    max_epochs : int, default={max_epochs}
        Maximum number of passes over the training data per ``fit`` call (with
        ``warm_start=True``, per call as well).
    batch_size : int or 'auto', default='auto'
        Mini-batch size; ``'auto'`` is {batch_auto}.
    learning_rate : float, default={learning_rate}
        Initial step size of the optimiser.
    optimizer : {{'adam', 'adamw', 'sgd'}}, default='adam'
        The optimiser; ``'sgd'`` uses Nesterov momentum 0.9. ``'adam'`` and ``'adamw'``
        are torch's fused kernels (torch >= 2.4, CPU and CUDA) in subclasses of
        ``torch.optim.Adam``/``AdamW`` that skip torch's per-step bookkeeping when no
        hook needs it (the same updates, bit for bit).
    alpha : float, default=0.0
        L2 penalty, applied as the optimiser's weight decay (decoupled for ``'adamw'``).
    lr_schedule : {{'step', 'cosine', 'plateau'}}, callable or None, default=None
        Learning-rate schedule stepped once per epoch: ``'step'`` divides the rate by 10
        every ``max_epochs // 3`` epochs, ``'cosine'`` anneals it to 0 over
        ``max_epochs``, ``'plateau'`` divides it by 10 when the monitored quantity stalls
        for ``n_iter_no_change // 2`` epochs. A callable receives the optimiser and
        returns a ``torch.optim.lr_scheduler`` object.
    grad_clip : float or None, default=None
        Clip the global gradient norm to this value before each step.
    early_stopping : bool, default=False
        Hold out ``validation_fraction`` of the data (stratified for classifiers), stop
        when the validation score has not improved by ``tol`` for ``n_iter_no_change``
        epochs, and restore the weights of the best epoch. Without it, training stops when
        the training loss has not improved by ``tol`` for ``n_iter_no_change`` epochs.
    validation_fraction : float, default=0.1
        Fraction of the training data held out when ``early_stopping=True``.
    n_iter_no_change : int, default={n_iter_no_change}
        Epochs without improvement before stopping.
    tol : float, default=1e-4
        Minimum improvement of the monitored quantity that counts.
    warm_start : bool, default=False
        Continue training on ``fit`` from the fitted weights and optimiser moments (up to
        ``max_epochs`` more epochs), with the *current* ``learning_rate``, ``alpha``,
        ``optimizer`` and ``lr_schedule`` (a changed rate or schedule restarts the
        schedule). The stopping rule restarts with each call, as scikit-learn's.
    random_state : int, RandomState instance or None, default=None
        Seeds a local :class:`torch.Generator` used for initialisation, shuffling and the
        validation split; the global torch and numpy RNGs are never touched. The same
        int gives bit-identical models on the CPU *with the same number of threads*
        (``torch.get_num_threads()``: convolutions and reductions sum in another order
        with another thread count). Under ``torch.distributed`` with ``None``, rank 0
        draws the seed and every rank uses it.
    device : str, default='auto'
        ``'auto'`` (CUDA when available, else CPU), ``'cpu'``, ``'cuda'`` or
        ``'cuda:N'``.
    dtype : {{'float32', 'float64'}}, default='float32'
        Floating-point type of the module's parameters and computations. Outputs are
        returned in the float dtype of the input.
    verbose : int, default=0
        ``1`` prints one line per epoch (loss, validation score, seconds; estimators whose
        epochs are single steps print about 50 lines in all); ``2`` adds progress over the
        batches (a tqdm bar, or plain lines when tqdm is not installed).
    callbacks : list of Callback or None, default=None
        Objects with hooks into the training loop; see :class:`skinverse.callbacks.Callback`.
    log_dir : str, path or None, default=None
        Write TensorBoard scalars here (requires the ``tensorboard`` package).
    checkpoint_dir : str, path or None, default=None
        Save the whole training state (weights, optimiser, scheduler, random stream,
        validation split, counters, best and averaged weights, caches) after every epoch
        of ``fit``, in a sub-directory named by a hash of the parameters and of the
        training data (side data included). A later ``fit`` with the same parameters on
        the same data resumes where it stopped and gives the model an uninterrupted fit
        would have given (bit for bit on the CPU with the same thread count); a finished
        fit is loaded, or continued when ``max_epochs`` was raised. Other parameters or
        other data (e.g. each fold of a search) train afresh in a sub-directory of their
        own. Files are safetensors + JSON (loading runs no code) with a SHA-256 digest: a
        damaged file raises :class:`~skinverse.exceptions.CheckpointError`. Parameters
        must identify themselves in any process: a lambda or local function is refused.
        ``partial_fit`` and warm-started calls train in memory and do not checkpoint.
"""

NUM_WORKERS = """
    num_workers : int, default=0
        ``DataLoader`` worker processes that read and validate the mini-batches of data
        passed lazily to ``fit`` (a numpy memory-map, a
        :class:`~skinverse.datasets.HDF5Array`, a map-style ``torch.utils.data.Dataset``);
        ``0`` reads in the training process. Workers stay alive for the whole ``fit``;
        batches are pinned when training on CUDA. Arrays in memory are indexed on the
        device and never use workers.
"""

SHARED_ATTRIBUTES = """\
    module_ : torch.nn.Module
        The fitted network, on ``device_``.
    device_ : torch.device
        The device the module lives on.
    optimizer_ : torch.optim.Optimizer
        The optimiser, with its state (used by ``warm_start`` and ``partial_fit``).
    training_state_ : skinverse.base.TrainingState
        Everything the fit carries between epochs; ``training_state_.state_dict()`` is
        exactly what a checkpoint holds. Which weights ``fit`` returns is decided by
        :meth:`~skinverse.base.TrainingState.final_weights`: the best validation epoch's
        with ``early_stopping``; after an interrupt, the last completed epoch's; after a
        non-finite loss, the last weights the loss vouched for (an error when none);
        otherwise the last epoch's (the exponential average where the estimator has one).
    n_iter_ : int
        Number of epochs run over the estimator's life.
    t_ : int
        Number of training samples seen.
    loss_curve_ : list of float
        Mean training loss of each epoch.
    best_loss_ : float
        Lowest training loss seen.
    validation_scores_ : list of float or None
        Validation score of each epoch with ``early_stopping``, else ``None``.
    best_validation_score_ : float or None
        Best validation score with ``early_stopping``, else ``None``.
    n_features_in_ : int
        Number of features seen during ``fit``.
    feature_names_in_ : ndarray of shape (`n_features_in_`,)
        Names of features seen during ``fit``, when ``X`` has string column names.
"""


def fill_doc(n_iter_no_change=10, batch_auto="``min(200, n_samples)``", streams=False,
             **defaults):
    """Class decorator: substitute ``{shared_parameters}`` and ``{shared_attributes}``
    into the docstring, with the class's own defaults shown."""

    def decorate(cls):
        params = SHARED_PARAMETERS.format(n_iter_no_change=n_iter_no_change,
                                          batch_auto=batch_auto, **defaults)
        if streams:
            params = params.rstrip("\n") + NUM_WORKERS
        cls.__doc__ = cls.__doc__.replace("{shared_parameters}", params.strip()).replace(
            "{shared_attributes}", SHARED_ATTRIBUTES.strip()
        )
        return cls

    return decorate


def doc_defaults(types=None, notes=None, **defaults):
    """Class decorator: show a class's own defaults of shared parameters whose default
    :func:`fill_doc` does not substitute (``early_stopping``, ``tol``, ``lr_schedule``);
    ``types`` replaces a parameter's type and ``notes`` adds a first line to its
    description (for a class-specific value such as ``'auto'``)."""

    def decorate(cls):
        doc = cls.__doc__
        for name, value in defaults.items():
            doc = re.sub(rf"(\n    {name} : [^\n]*default=)[^\n]*", rf"\g<1>{value}", doc)
        for name, kind in (types or {}).items():
            doc = re.sub(rf"(\n    {name} : )[^\n]*(, default=)", rf"\g<1>{kind}\g<2>", doc)
        for name, note in (notes or {}).items():
            doc = re.sub(rf"(\n    {name} : [^\n]*\n)", lambda m: m.group(1) + note, doc)
        cls.__doc__ = doc
        return cls

    return decorate
