"""
====================================================
1-D deconvolution: a RIM against the Wiener filter
====================================================

Signals drawn from a Gaussian process are blurred and corrupted by noise. For this
linear-Gaussian problem the best possible reconstruction (in mean squared error) is the
posterior mean -- the Wiener filter -- in closed form. A
:class:`~skinverse.rim.RIMRegressor` that only knows the blur operator and the noise level,
and learns from simulated examples, should come close to it.
"""

# %%
# The problem
# -----------
import matplotlib.pyplot as plt
import numpy as np
import torch

from skinverse.datasets import make_gaussian_signals, squared_exponential_covariance
from skinverse.operators import Blur, gaussian_kernel
from skinverse.rim import RIMRegressor

n, noise = 32, 0.1
cov = squared_exponential_covariance(n, length_scale=3.0)
blur = Blur(gaussian_kernel(7, 2.0), input_shape=(n,))
A = blur.to(dtype=torch.float64).forward(torch.eye(n, dtype=torch.float64)).numpy().T
rng = np.random.RandomState(0)
x_test, _ = make_gaussian_signals(1000, n, length_scale=3.0, random_state=1)
y_test = x_test @ A.T + noise * rng.normal(size=x_test.shape)

# The Wiener filter (posterior mean).
wiener = cov @ A.T @ np.linalg.inv(A @ cov @ A.T + noise**2 * np.eye(n))
x_wiener = y_test @ wiener.T

# %%
# Training from the simulator
# ---------------------------
# The prior sampler draws fresh signals every epoch; the operator and the noise level
# turn them into observations.
chol = torch.as_tensor(np.linalg.cholesky(cov), dtype=torch.float32)
rim = RIMRegressor(
    operator=Blur(gaussian_kernel(7, 2.0), input_shape=(n,)), noise_std=noise,
    prior_sampler=lambda k, generator: torch.randn((k, n), generator=generator) @ chol.T,
    n_simulations=2000, n_steps=6, hidden_size=96, step_weights="increasing",
    max_epochs=10, batch_size=100, learning_rate=2e-3, random_state=0,
).fit(None)
x_rim = rim.predict(y_test)

mse = lambda estimate: np.mean((estimate - x_test) ** 2)  # noqa: E731
print(f"MSE Wiener (optimal): {mse(x_wiener):.4f}")
print(f"MSE RIM:              {mse(x_rim):.4f}  (ratio {mse(x_rim) / mse(x_wiener):.3f})")
print(f"best step: {rim.best_step_} of {rim.n_steps}")

# %%
# One reconstruction, and the error of every RIM step
# ---------------------------------------------------
fig, (ax0, ax1) = plt.subplots(1, 2, figsize=(11, 4))
ax0.plot(x_test[0], "k", label="truth")
ax0.plot(y_test[0], ".", color="grey", label="observation")
ax0.plot(x_wiener[0], label="Wiener")
ax0.plot(x_rim[0], "--", label="RIM")
ax0.legend()
trajectory = rim.predict(y_test, return_trajectory=True)
ax1.plot(np.arange(1, rim.n_steps + 1), ((trajectory - x_test[:, None]) ** 2).mean(axis=(0, 2)),
         "o-", label="RIM step")
ax1.axhline(mse(x_wiener), color="k", ls=":", label="Wiener")
ax1.set_xlabel("step")
ax1.set_ylabel("test MSE")
ax1.legend()
fig.tight_layout()
plt.show()
