"""
===================================
Implicit regression of a smooth map
===================================

An :class:`~skinverse.implicit.ImplicitRegressor` fits a two-output nonlinear function.
We compare the Picard and Anderson solvers and the three gradient rules on the same data,
and embed a fitted scikit-learn MLP exactly as an implicit model.
"""

# %%
import time

import matplotlib.pyplot as plt
import numpy as np
from sklearn.neural_network import MLPRegressor

from skinverse.implicit import ImplicitRegressor
from skinverse.plotting import plot_loss_curves

rng = np.random.RandomState(0)
X = rng.uniform(-2, 2, size=(600, 2))
Y = np.c_[np.sin(X[:, 0]) * np.cos(X[:, 1]), np.tanh(X[:, 0] * X[:, 1])]
X_train, X_test, Y_train, Y_test = X[:450], X[450:], Y[:450], Y[450:]

# %%
# Solvers and gradient rules
# --------------------------
# ``solver`` finds the equilibrium :math:`z = \phi(Az + Bu + b)` (Picard iteration, or
# Anderson acceleration); ``backward`` chooses the gradient: the implicit-function-theorem
# adjoint (default), a truncated "phantom" gradient, or an exact dense solve. All four
# should reach a similar :math:`R^2`; they differ in time per epoch.
rows, models = [], {}
for solver, backward in [("picard", "implicit"), ("anderson", "implicit"),
                         ("picard", "phantom"), ("picard", "exact")]:
    start = time.perf_counter()
    reg = ImplicitRegressor(hidden_size=40, solver=solver, backward=backward, max_epochs=150,
                            learning_rate=5e-3, batch_size=50, random_state=0)
    reg.fit(X_train, Y_train)
    models[f"{solver} / {backward}"] = reg
    rows.append((solver, backward, reg.score(X_test, Y_test), time.perf_counter() - start))
    print(f"{solver:9s} {backward:9s} R^2 = {rows[-1][2]:.3f}  ({rows[-1][3]:.1f} s)")

plot_loss_curves(models)
plt.show()

# %%
# Predictions against the truth on the test set, for the default model: points on the
# diagonal are perfect.
Y_pred = models["picard / implicit"].predict(X_test)
fig, axes = plt.subplots(1, 2, figsize=(9, 4))
for k, ax in enumerate(axes):
    ax.scatter(Y_test[:, k], Y_pred[:, k], s=8)
    ax.plot([-1, 1], [-1, 1], "k--", lw=1)
    ax.set_xlabel(f"true output {k}")
    ax.set_ylabel(f"predicted output {k}")
fig.tight_layout()
plt.show()

# %%
# An MLP is an implicit model
# ---------------------------
# ``from_mlp`` stacks the hidden layers into the state; :math:`A` is strictly
# upper-triangular and the equilibrium is reached in as many steps as there are layers.
mlp = MLPRegressor(hidden_layer_sizes=(30, 30), max_iter=300, random_state=0)
mlp.fit(X_train, Y_train)
embedded = ImplicitRegressor.from_mlp(mlp, dtype="float64")
print("largest difference to the MLP:",
      np.abs(embedded.predict(X_test) - mlp.predict(X_test)).max())
