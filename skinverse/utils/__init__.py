"""Utilities: estimator discovery and small helpers for users and tests."""

from .discovery import all_estimators

__all__ = ["all_estimators"]
