"""Callbacks: hooks into the shared training loop.

Every hook is a no-op by default, so a callback overrides only what it needs. A callback
stops training by setting ``logs["stop"] = True`` in :meth:`Callback.on_epoch_end`; the
loop then finishes cleanly (best weights restored, fitted attributes set).
"""

import sys


class Callback:
    """Base class of training callbacks; every hook is a no-op.

    Hooks receive the estimator being fitted, so they can read its fitted state
    (``module_``, ``optimizer_``, ``loss_curve_``, ...). A callback with state of its own
    may define ``state_dict()`` (tensors and plain values) and ``load_state_dict(state)``:
    with ``checkpoint_dir`` its state is saved with every checkpoint and restored when
    the fit resumes (matched by position and class in ``callbacks``).

    Examples
    --------
    >>> from skinverse.callbacks import Callback
    >>> class StopBelow(Callback):
    ...     def __init__(self, threshold):
    ...         self.threshold = threshold
    ...     def on_epoch_end(self, estimator, logs):
    ...         if logs["loss"] < self.threshold:
    ...             logs["stop"] = True
    """

    def on_train_begin(self, estimator):
        """Called once per ``fit``/``partial_fit`` call, before the first epoch."""

    def on_epoch_begin(self, estimator, epoch):
        """Called before each epoch; ``epoch`` counts from 1 over the estimator's life."""

    def on_batch_end(self, estimator, batch_index, loss):
        """Called after each optimiser step; ``loss`` is a detached 0-d tensor.

        Reading ``loss.item()`` here synchronises with the device on a GPU.
        """

    def on_epoch_end(self, estimator, logs):
        """Called after each epoch with ``logs``: ``epoch``, ``loss``, ``validation_score``
        (``None`` without a validation set), ``learning_rate``, ``seconds`` and ``stop``.
        Set ``logs["stop"] = True`` to end training after this epoch."""

    def on_train_end(self, estimator):
        """Called once at the end of the call, after the best weights were restored."""


class EpochPrinter(Callback):
    """One line per epoch: loss, validation score and seconds (``verbose >= 1``).

    Estimators whose epochs are single optimiser steps (the IMNN) print every
    ``max_epochs // 50``-th epoch instead (and the first and the last), so a long fit
    shows steady progress in about 50 lines.
    """

    def __init__(self, stream=None, every=1):
        self.stream, self.every = stream, max(1, int(every))

    def on_epoch_end(self, estimator, logs):
        epoch = logs["epoch"]
        last = logs["stop"] or epoch >= getattr(estimator, "max_epochs", epoch)
        if self.every > 1 and epoch != 1 and epoch % self.every and not last:
            return
        line = f"epoch {epoch:4d}  loss {logs['loss']:.6g}"
        if logs["validation_score"] is not None:
            line += f"  validation score {logs['validation_score']:.6g}"
        line += f"  {logs['seconds']:.2f}s"
        print(line, file=self.stream or sys.stdout, flush=True)


class ProgressBar(Callback):
    """Progress over the batches of each epoch (``verbose >= 2``): a tqdm bar, or without
    tqdm a plain line every tenth of the epoch."""

    def __init__(self, n_batches, stream=None):
        self.n_batches, self.stream = n_batches, stream
        self._bar, self._epoch = None, 0

    def on_epoch_begin(self, estimator, epoch):
        self._epoch = epoch
        try:
            from tqdm.auto import tqdm
        except ImportError:
            return
        self._bar = tqdm(total=self.n_batches, desc=f"epoch {epoch}", leave=False)

    def on_batch_end(self, estimator, batch_index, loss):
        if self._bar is not None:
            self._bar.update(1)
            return
        done, step = batch_index + 1, max(1, self.n_batches // 10)
        if done % step == 0 or done == self.n_batches:
            print(f"  epoch {self._epoch}: batch {done}/{self.n_batches}",
                  file=self.stream or sys.stderr, flush=True)

    def on_epoch_end(self, estimator, logs):
        if self._bar is not None:
            self._bar.close()
            self._bar = None


class TensorBoardLogger(Callback):
    """Scalars per epoch to TensorBoard under ``log_dir`` (loss, validation score, lr).

    An estimator may add its own scalars and images through a ``_log_to_tensorboard(writer,
    epoch)`` method.
    """

    def __init__(self, log_dir):
        try:
            from torch.utils.tensorboard import SummaryWriter
        except ImportError as exc:
            raise ImportError(
                "log_dir was set but TensorBoard logging needs the 'tensorboard' package: "
                "pip install tensorboard (or pip install 'skinverse[logging]'), or leave "
                "log_dir=None."
            ) from exc
        self.log_dir = str(log_dir)
        self._writer_cls = SummaryWriter
        self.writer = None

    def on_train_begin(self, estimator):
        if self.writer is None:
            self.writer = self._writer_cls(log_dir=self.log_dir)

    def on_epoch_end(self, estimator, logs):
        epoch = logs["epoch"]
        self.writer.add_scalar("loss/train", logs["loss"], epoch)
        if logs["validation_score"] is not None:
            self.writer.add_scalar("score/validation", logs["validation_score"], epoch)
        self.writer.add_scalar("learning_rate", logs["learning_rate"], epoch)
        extra = getattr(estimator, "_log_to_tensorboard", None)
        if callable(extra):
            extra(self.writer, epoch)

    def on_train_end(self, estimator):
        if self.writer is not None:
            self.writer.flush()
            self.writer.close()
            self.writer = None

