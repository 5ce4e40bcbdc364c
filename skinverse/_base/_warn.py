"""Warnings that point at the user's line, not at the library's internals."""

import os
import sys
import warnings

import sklearn

_INTERNAL = tuple(
    os.path.dirname(module.__file__) + os.sep
    for module in (sys.modules[__name__.split(".")[0]], sklearn)
)


def warn_user(message, category):
    """``warnings.warn`` with the stack level of the first frame outside skinverse and
    scikit-learn (so notebooks show the cell that called ``fit``)."""
    frame, level = sys._getframe(1), 2
    while frame is not None and frame.f_code.co_filename.startswith(_INTERNAL):
        frame, level = frame.f_back, level + 1
    warnings.warn(message, category, stacklevel=level)
