"""
======================================================
4x multi-coil MRI: zero-filled, CG-SENSE and MoDL
======================================================

Phantoms are imaged by 8 simulated coils with 4x Cartesian undersampling. We compare the
zero-filled reconstruction :math:`A^H y`, CG-SENSE
(:math:`(A^H A + \\lambda I)^{-1} A^H y`) and MoDL, which alternates a learned ResNet
denoiser with the same conjugate-gradient data consistency. Coil maps and masks differ per
image and travel as ``fit``/``predict`` keyword arguments.
"""

# %%
import matplotlib.pyplot as plt
import numpy as np
import torch

from skinverse.datasets import make_mri_data, make_phantoms
from skinverse.operators import MultiCoilMRI
from skinverse.unrolled import UnrolledRegressor

size = 32
images = make_phantoms(110, size, random_state=0)
X, y, maps, masks = make_mri_data(images, n_coils=8, acceleration=4, noise_std=0.01,
                                  random_state=0)
train, test = slice(0, 90), slice(90, 110)

sense = UnrolledRegressor(method="cg-sense", lam=0.01, cg_max_iter=30, max_epochs=2,
                          random_state=0)
sense.fit(X[train], y[train], maps=maps[train], masks=masks[train])
modl = UnrolledRegressor(method="modl", n_unrolls=3, width=16, depth=2, cg_max_iter=6,
                         lam=0.01, max_epochs=6, batch_size=8, random_state=0)
modl.fit(X[train], y[train], maps=maps[train], masks=masks[train])

test_args = dict(maps=maps[test], masks=masks[test])
# The zero-filled image A^H y, with the operator itself (complex tensors inside).
operator = MultiCoilMRI(image_shape=(size, size), n_coils=8)
kspace = torch.as_tensor(X[test].reshape(-1, 2, 8, size, size))
zero_filled = operator.adjoint(torch.complex(kspace[:, 0], kspace[:, 1]),
                               maps=torch.complex(*torch.as_tensor(maps[test]).unbind(1)),
                               mask=torch.as_tensor(masks[test]))
results = {
    "zero-filled": torch.stack([zero_filled.real, zero_filled.imag], 1).reshape(20, -1).numpy(),
    "CG-SENSE": sense.predict(X[test], **test_args),
    "MoDL": modl.predict(X[test], **test_args),
}
print(f"CG-SENSE PSNR {sense.score(X[test], y[test], **test_args):.2f} dB, "
      f"MoDL PSNR {modl.score(X[test], y[test], **test_args):.2f} dB, "
      f"learned lambda {modl.lam_:.4f}")

# %%
def magnitude(flat):
    two = flat.reshape(2, size, size)
    return np.hypot(two[0], two[1])


fig, axes = plt.subplots(1, 5, figsize=(14, 3))
axes[0].imshow(masks[90], cmap="gray")
axes[0].set_title("sampling mask (4x)")
for ax, (name, pred) in zip(axes[1:], list(results.items()) + [("truth", y[test])]):
    ax.imshow(magnitude(pred[0]), cmap="gray", vmin=0, vmax=1)
    ax.set_title(name)
for ax in axes:
    ax.axis("off")
fig.tight_layout()
plt.show()
