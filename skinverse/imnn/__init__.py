"""Information-maximising neural networks (Charnock, Lavaux & Wandelt 2018) and
likelihood-free inference with their summaries."""

from ._estimator import IMNNTransformer
from ._lfi import ApproximateBayesianComputation, GaussianApproximation, PopulationMonteCarlo

__all__ = [
    "ApproximateBayesianComputation",
    "GaussianApproximation",
    "IMNNTransformer",
    "PopulationMonteCarlo",
]
