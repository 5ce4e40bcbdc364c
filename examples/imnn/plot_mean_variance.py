"""
=========================================================
Inferring a mean and a variance with an IMNN
=========================================================

Ten draws from :math:`\\mathcal N(\\mu, \\Sigma)`: how much can a data set tell about
:math:`\\theta = (\\mu, \\Sigma)`? The Fisher information at :math:`\\theta = (0, 1)` is
:math:`\\det F = N^2/(2\\Sigma^3) = 50`. An :class:`~skinverse.imnn.IMNNTransformer`
learns two summaries that keep (almost) all of it, from simulations only; then the
summaries feed likelihood-free inference.
"""

# %%
import matplotlib.pyplot as plt
import numpy as np
import torch

from skinverse.datasets import gaussian_mean_variance_problem
from skinverse.imnn import (
    ApproximateBayesianComputation,
    GaussianApproximation,
    IMNNTransformer,
    PopulationMonteCarlo,
)
from skinverse.plotting import plot_corner, plot_imnn_history

problem = gaussian_mean_variance_problem(n_data=10)
# Fresh simulations every step make the training loss noisy, so no plateau stopping
# (n_iter_no_change) here: a fixed number of steps with a cosine learning-rate decay. This
# CPU-sized run keeps most of the information; benchmarks/bench_imnn.py trains longer.
imnn = IMNNTransformer(simulator=problem.simulator, theta_fid=problem.theta_fid, n_s=200,
                       n_d=200, hidden_layer_sizes=(64, 64), max_epochs=2500,
                       lr_schedule="cosine", n_iter_no_change=10**9, random_state=0).fit()
fisher = imnn.fisher_information(n_simulations=2000, random_state=1)
print(f"det F on fresh simulations: {np.linalg.det(fisher):.1f} (analytic 50)")
plot_imnn_history(imnn, expected_detF=50.0)
plt.tight_layout()
plt.show()

# %%
# Posterior for one observed data set
# -----------------------------------
truth = np.array([0.4, 1.3])
observed = problem.simulator(torch.tensor(truth[None], dtype=torch.float32),
                             torch.Generator().manual_seed(7)).numpy()
print("quasi-ML estimate:", imnn.transform(observed)[0].round(3), "truth:", truth)

low, high = [-2.0, 0.2], [2.0, 3.0]
grids, densities = GaussianApproximation(imnn, low, high).marginals(observed)
samples, _ = ApproximateBayesianComputation(imnn, low, high, random_state=0).run(
    observed, n_simulations=20000, accept_fraction=0.02)
particles, weights, n_sims = PopulationMonteCarlo(imnn, low, high, random_state=0).run(
    observed, n_particles=500)
print(f"ABC kept {len(samples)} of 20000 simulations; PMC used {n_sims}")

axes = plot_corner(particles, weights=weights, labels=["mu", "Sigma"], truth=truth)
for i, (grid, density) in enumerate(zip(grids, densities)):
    axes[i, i].plot(grid, density[0], "C1", label="Gaussian approximation")
    axes[i, i].hist(samples[:, i], bins=30, density=True, histtype="step", color="C2",
                    label="rejection ABC")
axes[0, 0].legend(fontsize=7)
plt.show()
