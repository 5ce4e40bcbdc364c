"""
=========================================================
PSNR's data range, and metrics as GridSearchCV scorers
=========================================================

PSNR needs a range :math:`R`: :math:`10\\log_{10}(R^2/\\mathrm{MSE})`. With
``data_range=None`` :func:`skinverse.metrics.psnr` uses each reference's own
``max - min``, which needs no units; with a number it uses that range for every image --
the convention (``1.0`` or ``255``) when the images have a known range. This example shows
the difference on photo patches, then tunes a linear denoiser with PSNR, SSIM and NMSE
as scikit-learn scorers.
"""

# %%
# Two ranges on the same reconstructions
# --------------------------------------
# Patches of the photographs that ship with scikit-learn, in [0, 1], with Gaussian noise
# of standard deviation 0.05 (an MSE of 0.0025, i.e. 26.0 dB with :math:`R = 1`).
import matplotlib.pyplot as plt
import numpy as np
from sklearn.linear_model import Ridge
from sklearn.model_selection import GridSearchCV

from skinverse.datasets import load_sample_patches
from skinverse.metrics import make_psnr_scorer, make_ssim_scorer, nmse_scorer, psnr
from skinverse.plotting import plot_reconstructions

size = 8
clean = load_sample_patches(size, 1200, random_state=0)
rng = np.random.RandomState(0)
noisy = clean + 0.05 * rng.normal(size=clean.shape)

per_patch_fixed = np.array([psnr(a[None], b[None], data_range=1.0)
                            for a, b in zip(clean, noisy)])
per_patch_own = np.array([psnr(a[None], b[None]) for a, b in zip(clean, noisy)])
contrast = np.ptp(clean, axis=1)
print(f"mean PSNR, data_range=1:    {psnr(clean, noisy, data_range=1.0):.2f} dB")
print(f"mean PSNR, per-patch range: {psnr(clean, noisy):.2f} dB")
# The per-patch range does not depend on units: the same patches in [0, 255], or
# centred at zero, give the same PSNR.
print(f"in [0, 255]: {psnr(255 * clean, 255 * noisy):.2f} dB, "
      f"zero-centred: {psnr(clean - 0.5, noisy - 0.5):.2f} dB")

# %%
# The same noise is worse news for a flat patch than for a contrasted one: with its own
# range a low-contrast patch scores lower, while the fixed range gives every patch the
# same 26 dB up to sampling noise. Half of these 8 x 8 patches (sky, walls) have a
# contrast below 0.05, as small as the noise, so the mean with per-patch ranges is low:
# it measures the noise against each patch's own content. Use a fixed range to compare
# with published numbers on images of a known range; keep the default when the range is
# unknown or the data are signed (residuals, velocities, phases).
fig, ax = plt.subplots(figsize=(5.5, 4))
ax.scatter(contrast, per_patch_own, s=6, label="data_range=None (each patch's max - min)")
ax.scatter(contrast, per_patch_fixed, s=6, label="data_range=1.0")
ax.set_xscale("log")
ax.set_xlabel("contrast of the clean patch (max - min)")
ax.set_ylabel("PSNR of the noisy patch (dB)")
ax.legend(fontsize=8)
fig.tight_layout()
plt.show()

# %%
# Scorers in a grid search
# ------------------------
# A ridge regression from noisy to clean patches is a (linear, Wiener-like) denoiser. Its
# penalty ``alpha`` is tuned on three metrics at once; ``make_ssim_scorer`` fixes the
# image shape SSIM needs, and ``nmse_scorer`` is negated so that higher is better.
X_train, X_test = noisy[:1000], noisy[1000:]
y_train, y_test = clean[:1000], clean[1000:]
scoring = {"PSNR": make_psnr_scorer(data_range=1.0),
           "SSIM": make_ssim_scorer(image_shape=(size, size), data_range=1.0),
           "-NMSE": nmse_scorer}
alphas = np.logspace(-1, 4, 11)
search = GridSearchCV(Ridge(), {"alpha": alphas}, scoring=scoring, refit="PSNR", cv=3)
search.fit(X_train, y_train)
print("best alpha (PSNR):", search.best_params_["alpha"])

# %%
# The three cross-validated curves (NMSE un-negated, on a log scale). The metrics need not
# agree on the best ``alpha``: refitting on one of them (``refit="PSNR"``) is a choice.
fig, axes = plt.subplots(1, 3, figsize=(12, 3.3))
for ax, name in zip(axes, scoring):
    values = search.cv_results_[f"mean_test_{name}"]
    if name == "-NMSE":
        values, name = -values, "NMSE (lower is better)"
        ax.set_yscale("log")
    ax.semilogx(alphas, values, "o-")
    ax.axvline(search.best_params_["alpha"], color="k", ls=":")
    ax.set_xlabel("alpha")
    ax.set_title(f"mean test {name}")
fig.tight_layout()
plt.show()

# %%
# The refitted denoiser on test patches, with their PSNR (:math:`R = 1`).
plot_reconstructions(y_test, {"noisy": X_test, "ridge": search.predict(X_test)},
                     image_shape=(size, size), indices=[0, 1, 2], data_range=1.0)
plt.tight_layout()
plt.show()
