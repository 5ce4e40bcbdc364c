"""
=====================================================
Implicit deep learning on digits, and what it learned
=====================================================

An :class:`~skinverse.implicit.ImplicitClassifier` defines its hidden state by an
equilibrium :math:`z = \\phi(Az + Bu + b)` instead of layers. Here it classifies the
handwritten digits that ship with scikit-learn, next to an MLP with the same budget, and we
look at the learned matrices :math:`[[A, B], [C, D]]` and at how the equilibrium solver
behaved during training.
"""

# %%
# Data and models
# ---------------
import matplotlib.pyplot as plt
from sklearn.datasets import load_digits
from sklearn.model_selection import train_test_split
from sklearn.neural_network import MLPClassifier
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from skinverse.implicit import ImplicitClassifier
from skinverse.plotting import plot_implicit_structure, plot_loss_curves

# The pixels are standardised: unlike a RIM's observations, these inputs have no
# physical units to preserve. CPU-sized settings: 60 hidden states, 20 epochs; a small
# ``l1_penalty`` pushes the weights towards sparsity.
X, y = load_digits(return_X_y=True)
X_train, X_test, y_train, y_test = train_test_split(
    X, y, test_size=0.25, stratify=y, random_state=0
)
implicit = make_pipeline(
    StandardScaler(),
    ImplicitClassifier(hidden_size=60, max_epochs=20, batch_size=100, learning_rate=3e-3,
                       l1_penalty=1e-5, random_state=0),
).fit(X_train, y_train)
mlp = make_pipeline(
    StandardScaler(), MLPClassifier((60,), max_iter=20, batch_size=100, random_state=0)
).fit(X_train, y_train)
print(f"implicit accuracy: {implicit.score(X_test, y_test):.3f}")
print(f"MLP accuracy:      {mlp.score(X_test, y_test):.3f}")

model = implicit[-1]
print(f"||A||_inf = {model.A_inf_norm_:.3f} (bound kappa = {model.kappa})")

# %%
# The learned structure and the solver
# ------------------------------------
# Left, :math:`|[[A, B], [C, D]]|` on a log scale; the red lines separate the state from
# the inputs (columns) and from the outputs (rows). :math:`A` (top left, 60 x 60) is the
# coupling of the state with itself -- a layered network would have it upper-triangular.
# Right, the mean number of solver iterations per batch (Anderson acceleration, the
# default): with
# :math:`\|A\|_\infty \le \kappa = 0.95` each iteration multiplies the error by at most
# 0.95, and ``reuse_equilibria`` starts each epoch from the last equilibria, so the
# counts should stay well below ``max_iter=50``.
fig, (ax0, ax1) = plt.subplots(1, 2, figsize=(12, 5))
model.plot_structure(ax=ax0)
ax1.plot(model.forward_iterations_, label="forward (equilibrium)")
ax1.plot(model.backward_iterations_, label="backward (adjoint)")
ax1.set_xlabel("epoch")
ax1.set_ylabel("mean solver iterations per batch")
ax1.legend()
fig.tight_layout()
plt.show()

# %%
# Which weights matter? The sparsity pattern of each block, counting entries above 1% of
# the largest one in absolute value. An empty column of :math:`B` is a pixel no state
# reads (the digits' always-blank border pixels carry no gradient, and the L1 penalty
# shrinks their weights); an empty column of :math:`C` would be a state no class reads.
plot_implicit_structure(model, kind="spy", precision=0.01)
plt.tight_layout()
plt.show()

# %%
# Training curves of both models (the MLP's loss is its own cross-entropy plus its
# L2 penalty, so compare shapes, not values).
plot_loss_curves({"implicit": implicit, "MLP": mlp})
plt.show()

# %%
# How robust is it?
# -----------------
# For ReLU and :math:`\rho(|A|) < 1`, a perturbation of every (standardised) pixel by at
# most :math:`\sigma` moves each logit by at most
# :math:`|C|(I - |A|)^{-1}|B|\sigma + |D|\sigma`.
try:
    print("logit bound for sigma=0.01:", model.robustness_bound(0.01).round(3))
except ValueError as exc:  # the Perron-Frobenius condition may fail for a learned A
    print(exc)
