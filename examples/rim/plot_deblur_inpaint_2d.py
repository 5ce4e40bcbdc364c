"""
=================================================
2-D deblurring and inpainting of photo patches
=================================================

Patches of the two photographs that ship with scikit-learn are blurred (or have 40% of
their pixels removed) and corrupted by noise. A :class:`~skinverse.rim.RIMRegressor` with
a convolutional U-Net backbone reconstructs them; a Tikhonov reconstruction
(:math:`\\arg\\min_x \\|Ax - y\\|^2 + \\lambda\\|x\\|^2`, solved by conjugate gradients) is the
baseline.
"""

# %%
import matplotlib.pyplot as plt
import numpy as np
import torch

from skinverse.datasets import load_sample_patches
from skinverse.metrics import psnr
from skinverse.operators import Blur, Inpainting, gaussian_kernel
from skinverse.rim import RIMRegressor

size, noise = 12, 0.02
patches = load_sample_patches(size, 1000, random_state=0)
rng = np.random.RandomState(0)
mask = (rng.uniform(size=(size, size)) > 0.4).astype(float)
problems = {
    "deblurring": Blur(gaussian_kernel(5, 1.2, ndim=2), input_shape=(size, size)),
    "inpainting": Inpainting(mask),
}

results = {}
for name, operator in problems.items():
    clean = torch.as_tensor(patches.reshape(-1, size, size), dtype=torch.float32)
    observed = operator(clean).reshape(len(patches), -1).numpy().astype(np.float64)
    observed += noise * rng.normal(size=observed.shape)
    X_train, X_test = observed[:850], observed[850:]
    y_train, y_test = patches[:850], patches[850:]

    rhs = operator.adjoint(torch.as_tensor(X_test.reshape(-1, size, size), dtype=torch.float32))
    tikhonov, _ = operator.solve_normal(rhs, lam=0.05, max_iter=200)
    tikhonov = tikhonov.reshape(len(X_test), -1).numpy()

    rim = RIMRegressor(operator=operator, noise_std=noise, input_shape=(size, size),
                       width=8, depth=2, n_steps=4, max_epochs=4, batch_size=32,
                       learning_rate=2e-3, random_state=0).fit(X_train, y_train)
    estimate = rim.predict(X_test)
    results[name] = (X_test, tikhonov, estimate, y_test)
    print(f"{name:10s} PSNR observation {psnr(y_test, X_test, data_range=1):5.2f} dB, "
          f"Tikhonov {psnr(y_test, tikhonov, data_range=1):5.2f} dB, "
          f"RIM {psnr(y_test, estimate, data_range=1):5.2f} dB")

# %%
# A few test patches
# ------------------
fig, axes = plt.subplots(2, 4, figsize=(9, 5))
for row, (name, images) in zip(axes, results.items()):
    for ax, image, title in zip(row, images, ["observed", "Tikhonov", "RIM", "truth"]):
        ax.imshow(image[3].reshape(size, size), cmap="gray", vmin=0, vmax=1)
        ax.set_title(f"{name}\n{title}" if title == "observed" else title)
        ax.axis("off")
fig.tight_layout()
plt.show()
