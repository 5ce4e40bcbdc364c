"""
====================================================
1-D deconvolution: a RIM against the Wiener filter
====================================================

Signals drawn from a Gaussian process are blurred and corrupted by noise. For this
linear-Gaussian problem the best possible reconstruction (in mean squared error) is the
posterior mean -- the Wiener filter -- in closed form. A
:class:`~skinverse.rim.RIMRegressor` that only knows the blur operator and the noise level,
and learns from simulated examples, should come close to it: this is the check that a
learned reconstruction does what it should on a problem whose answer we know.
"""

# %%
# The problem
# -----------
# The forward model :math:`X = A y + \sigma\varepsilon` is a Gaussian blur
# (:class:`~skinverse.operators.Blur`) of 32-sample signals with noise :math:`\sigma = 0.1`.
import matplotlib.pyplot as plt
import numpy as np
import torch

from skinverse.datasets import make_gaussian_signals, squared_exponential_covariance
from skinverse.operators import Blur, gaussian_kernel
from skinverse.plotting import plot_loss_curves, plot_reconstructions, plot_rim_trajectory
from skinverse.rim import RIMRegressor

n, noise = 32, 0.1
cov = squared_exponential_covariance(n, length_scale=3.0)
blur = Blur(gaussian_kernel(7, 2.0), input_shape=(n,))
A = blur.to(dtype=torch.float64).forward(torch.eye(n, dtype=torch.float64)).numpy().T
rng = np.random.RandomState(0)
x_test, _ = make_gaussian_signals(1000, n, length_scale=3.0, random_state=1)
y_test = x_test @ A.T + noise * rng.normal(size=x_test.shape)

# The Wiener filter (posterior mean): the optimal baseline.
wiener = cov @ A.T @ np.linalg.inv(A @ cov @ A.T + noise**2 * np.eye(n))
x_wiener = y_test @ wiener.T

# %%
# Training from the simulator
# ---------------------------
# No training set: ``prior_sampler`` draws fresh signals every epoch and the operator and
# the noise level turn them into observations (``fit(None)``). The signals are 1-D
# vectors, so the RIM uses its dense GRU backbone. Everything else is at its default:
# ``n_simulations`` fresh signals an epoch, 8 steps, and training until the R^2 of
# held-out simulations stops improving.
chol = torch.as_tensor(np.linalg.cholesky(cov), dtype=torch.float32)
rim = RIMRegressor(
    operator=Blur(gaussian_kernel(7, 2.0), input_shape=(n,)), noise_std=noise,
    prior_sampler=lambda k, generator: torch.randn((k, n), generator=generator) @ chol.T,
    random_state=0,
).fit(None)
x_rim = rim.predict(y_test)


def mse(estimate):
    return np.mean((estimate - x_test) ** 2)


print(f"MSE Wiener (optimal): {mse(x_wiener):.4f}")
print(f"MSE RIM:              {mse(x_rim):.4f}  (ratio {mse(x_rim) / mse(x_wiener):.3f})")
print(f"best step: {rim.best_step_} of {rim.n_steps}, {rim.n_iter_} epochs")

# %%
# Reconstructions
# ---------------
# The observation (blurred and noisy), the Wiener filter and the RIM, against the truth;
# the legend gives each curve's PSNR (range: each signal's max - min).
plot_reconstructions(x_test, {"observation": y_test, "Wiener": x_wiener, "RIM": x_rim},
                     n_images=2)
plt.tight_layout()
plt.show()

# %%
# What the RIM does step by step
# ------------------------------
# Left: one signal's estimate after each of the 8 steps, from the ridge (Wiener-type)
# start :math:`(A^\top A + \sigma^2 I)^{-1} A^\top X` of the standardised signals to the
# final reconstruction. Right: the test error of every step; ``predict`` returns the step
# with the lowest error on held-out simulations (``best_step_``). The error should fall
# and then stay flat -- a rising tail would mean too many steps for this training budget.
axes = plot_rim_trajectory(rim, y_test, x_test, index=0)
axes[1].axhline(mse(x_wiener), color="C3", ls="--", label="Wiener (optimal)")
axes[1].legend()
plt.tight_layout()
plt.show()

# %%
# Training loss
# -------------
# Every epoch sees ``n_simulations`` fresh simulations, so the loss is also an honest
# test error.
plot_loss_curves(rim)
plt.show()
