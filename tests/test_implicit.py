"""Implicit models against references: closed-form fixed points, finite differences,
autograd through an unrolled solve, the exact MLP embedding, Monte-Carlo perturbations."""

import pickle
import warnings

import numpy as np
import pytest
import torch
from sklearn.datasets import load_digits, make_classification
from sklearn.model_selection import GridSearchCV, cross_val_score
from sklearn.neural_network import MLPClassifier, MLPRegressor
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from skinverse.callbacks import Callback
from skinverse.exceptions import EquilibriumConvergenceWarning
from skinverse.implicit import ImplicitClassifier, ImplicitRegressor
from skinverse.implicit._module import ACTIVATIONS, ImplicitModule
from skinverse.implicit._projection import (
    _project_rows_torch,
    project_rows_l1,
    project_rows_l1_,
)
from skinverse.implicit._solvers import anderson, picard

pytestmark = pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")


def _l1_ball_reference(v, radius):
    """Projection onto the l1 ball by bisection on the threshold."""
    if np.abs(v).sum() <= radius:
        return v
    lo, hi = 0.0, np.abs(v).max()
    for _ in range(200):
        mid = (lo + hi) / 2
        lo, hi = (mid, hi) if np.clip(np.abs(v) - mid, 0, None).sum() > radius else (lo, mid)
    return np.sign(v) * np.clip(np.abs(v) - hi, 0, None)


# ---------------------------------------------------------------- well-posedness
def _in_place(A, radius):
    A = A.clone()
    project_rows_l1_(A, radius)
    return A


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
@pytest.mark.parametrize("implementation", ["default", "in-place", "torch"])
def test_row_projection_matches_bisection_and_keeps_inside_rows(implementation, dtype):
    rng = np.random.RandomState(0)
    A = rng.normal(size=(40, 25))
    A[:5] *= 0.001  # rows already inside the ball
    A[5] = 0.0
    A[6] = 0.0
    A[6, 3] = -5.0  # one entry outside: the threshold leaves 0.95 of it
    project = {"default": project_rows_l1, "in-place": _in_place,
               "torch": _project_rows_torch}[implementation]
    P = project(torch.as_tensor(A, dtype=dtype), 0.95).double().numpy()
    expected = np.stack([_l1_ball_reference(row, 0.95) for row in A])
    atol = 1e-12 if dtype == torch.float64 else 1e-6
    np.testing.assert_allclose(P, expected, atol=atol)
    np.testing.assert_array_equal(P[:6], A[:6].astype(P.dtype if dtype == torch.float64
                                                      else np.float32))
    assert np.abs(P).sum(axis=1).max() <= 0.95 + 10 * atol


def test_in_place_projection_skips_a_well_posed_matrix():
    A = torch.full((4, 4), 0.2, dtype=torch.float64)
    before = A.clone()
    assert not project_rows_l1_(A, 0.95)
    assert torch.equal(A, before)
    assert project_rows_l1_(A, 0.5) and torch.allclose(A, torch.full_like(A, 0.125))


@pytest.mark.parametrize("activation", ["relu", "tanh", "sigmoid", "silu"])
def test_inf_norm_bound_holds_after_every_step(activation):
    class CheckNorm(Callback):
        worst = 0.0

        def on_batch_end(self, estimator, batch_index, loss):
            self.worst = max(self.worst, estimator.module_.a_inf_norm())

    X, y = make_classification(200, 8, random_state=0)
    check = CheckNorm()
    clf = ImplicitClassifier(hidden_size=16, activation=activation, max_epochs=3,
                             learning_rate=0.05, callbacks=[check], random_state=0).fit(X, y)
    radius = 0.95 / ACTIVATIONS[activation][2]
    assert check.worst <= radius * (1 + 1e-6)
    assert clf.A_inf_norm_ == pytest.approx(check.worst, rel=1e-3) or clf.A_inf_norm_ <= radius


def test_monotone_parametrisation_is_strongly_monotone():
    X, y = make_classification(200, 8, random_state=0)
    clf = ImplicitClassifier(hidden_size=12, well_posedness="monotone", monotone_margin=0.2,
                             max_epochs=40, learning_rate=0.01, max_iter=500,
                             random_state=0).fit(X, y)
    A = clf.module_.matrix_A().detach().double().cpu().numpy()
    symmetric = np.eye(12) - (A + A.T) / 2
    assert np.linalg.eigvalsh(symmetric).min() >= 0.2 - 1e-5
    assert clf.fraction_converged_[-1] == 1.0
    assert clf.score(X, y) > 0.8


# ---------------------------------------------------------------- solvers
@pytest.mark.parametrize("solver", [picard, anderson])
def test_solvers_find_the_closed_form_fixed_point(solver):
    rng = np.random.RandomState(0)
    A = rng.uniform(-1, 1, size=(10, 10))
    A *= 0.9 / np.abs(A).sum(axis=1, keepdims=True)
    b = rng.normal(size=(5, 10))
    expected = np.linalg.solve(np.eye(10) - A, b.T).T  # z = A z + b
    At = torch.as_tensor(A.T)
    z, stats = solver(lambda z, inj: torch.addmm(inj, z, At),
                      torch.zeros(5, 10, dtype=torch.float64),
                      context=(torch.as_tensor(b),), max_iter=1000, tol=1e-12)
    np.testing.assert_allclose(z.numpy(), expected, atol=1e-10)
    assert stats.fraction_converged == 1.0


def test_picard_result_does_not_depend_on_the_batch():
    rng = np.random.RandomState(1)
    A = torch.as_tensor(rng.uniform(-1, 1, size=(8, 8)) * 0.11)
    inj = torch.as_tensor(rng.normal(size=(6, 8)) * np.array([1, 1, 1, 100, 100, 100])[:, None])

    def f(z, c):
        return torch.relu(torch.addmm(c, z, A.T))

    zeros = torch.zeros(6, 8, dtype=torch.float64)
    together, _ = picard(f, zeros, context=(inj,), max_iter=200, tol=1e-6)
    alone, _ = picard(f, zeros[:1], context=(inj[:1],), max_iter=200, tol=1e-6)
    # A sample that stopped at another iterate would be off by ~tol = 1e-6. Only GEMM
    # rounding may differ with the number of rows (1 ulp on the H100 host's CPU).
    np.testing.assert_allclose(together[:1].numpy(), alone.numpy(), rtol=1e-13, atol=0)


# ---------------------------------------------------------------- gradients
def _module(backward, activation="tanh", solver="picard", steps=5):
    phi, dphi, lipschitz, _ = ACTIVATIONS[activation]
    module = ImplicitModule(3, 6, 2, phi=phi, dphi=dphi, lipschitz=lipschitz, fit_D=True,
                            bias=True, well_posedness="inf_norm", kappa=0.9,
                            monotone_margin=0.1, structure="dense", rank=None, solver=solver,
                            max_iter=2000, solver_tol=1e-13, backward=backward,
                            backward_steps=steps).double()
    module.reset_parameters_with(torch.Generator().manual_seed(0))
    with torch.no_grad():
        module.A.mul_(6)  # push A towards the bound so the equilibrium matters
    module.enforce_well_posedness()
    return module


def _loss(module, U, weights):
    return (module(U) * weights).sum()


def _grads(module, U, weights):
    module.zero_grad()
    _loss(module, U, weights).backward()
    return {name: p.grad.clone() for name, p in module.named_parameters()}


def _unrolled_grads(module, U, weights, n_steps=400):
    module.zero_grad()
    A = module.matrix_A()
    injected = U @ module.B.T + module.b
    z = torch.zeros_like(injected)
    for _ in range(n_steps):
        z = module.phi(z @ A.T + injected)
    out = z @ module.C.T + U @ module.D.T + module.c
    (out * weights).sum().backward()
    return {name: p.grad.clone() for name, p in module.named_parameters()}


@pytest.fixture
def grad_problem():
    rng = np.random.RandomState(0)
    return torch.as_tensor(rng.normal(size=(4, 3))), torch.as_tensor(rng.normal(size=(4, 2)))


@pytest.mark.parametrize("backward", ["implicit", "exact"])
@pytest.mark.parametrize("solver", ["picard", "anderson"])
def test_implicit_gradient_matches_unrolled_autograd(grad_problem, backward, solver):
    U, weights = grad_problem
    module = _module(backward, solver=solver)
    got, expected = _grads(module, U, weights), _unrolled_grads(module, U, weights)
    for name in expected:
        torch.testing.assert_close(got[name], expected[name], rtol=1e-7, atol=1e-9)


def _reference_outputs(module, U, n_steps=400):
    """The model by plain autograd through ``n_steps`` Picard steps (no solver, no custom
    node): the reference the fused forward and backward are checked against."""
    A = module.matrix_A()
    injected = U @ module.B.T + (module.b if module.b is not None else 0)
    z = torch.zeros_like(injected)
    for _ in range(n_steps):
        z = module.phi(z @ A.T + injected)
    out = z @ module.C.T + (module.c if module.c is not None else 0)
    return out + U @ module.D.T if module.D is not None else out


@pytest.mark.parametrize("activation", sorted(ACTIVATIONS))
@pytest.mark.parametrize("fit_D, bias", [(True, True), (False, False), (True, False)])
@pytest.mark.parametrize("structure", ["dense", "upper", "low_rank"])
def test_fused_node_matches_plain_autograd(activation, fit_D, bias, structure):
    """The single autograd node (outputs and all gradients, the input's included, the
    slope from the state for ReLU/leaky ReLU/tanh/sigmoid and from the pre-activation
    for SiLU) against autograd through an unrolled solve, for every activation, the
    optional parameters and the structures."""
    phi, dphi, lipschitz, _ = ACTIVATIONS[activation]
    module = ImplicitModule(3, 6, 2, phi=phi, dphi=dphi, lipschitz=lipschitz, fit_D=fit_D,
                            bias=bias, well_posedness="inf_norm", kappa=0.9,
                            monotone_margin=0.1, structure=structure, rank=2,
                            solver="anderson", max_iter=2000, solver_tol=1e-13,
                            backward="implicit", backward_steps=1).double()
    module.reset_parameters_with(torch.Generator().manual_seed(1))
    with torch.no_grad():
        for name in ("A", "P", "Q"):
            if hasattr(module, name):
                getattr(module, name).mul_(4)
    module.enforce_well_posedness()
    rng = np.random.RandomState(2)
    U = torch.as_tensor(rng.normal(size=(5, 3)), dtype=torch.float64).requires_grad_()
    weights = torch.as_tensor(rng.normal(size=(5, 2)))
    params = [p for _, p in module.named_parameters()]
    got_out = module(U)
    got = torch.autograd.grad((got_out * weights).sum(), [U, *params])
    expected_out = _reference_outputs(module, U)
    expected = torch.autograd.grad((expected_out * weights).sum(), [U, *params])
    torch.testing.assert_close(got_out, expected_out, rtol=1e-10, atol=1e-11)
    for value, reference in zip(got, expected):
        torch.testing.assert_close(value, reference, rtol=1e-7, atol=1e-9)


def test_implicit_gradient_matches_finite_differences(grad_problem):
    U, weights = grad_problem
    module = _module("implicit")
    grads = _grads(module, U, weights)
    eps = 1e-6
    for name, param in module.named_parameters():
        numeric = torch.zeros_like(param)
        for idx in np.ndindex(*param.shape):
            with torch.no_grad():
                original = param[idx].item()
                param[idx] = original + eps
                up = _loss(module, U, weights).item()
                param[idx] = original - eps
                down = _loss(module, U, weights).item()
                param[idx] = original
            numeric[idx] = (up - down) / (2 * eps)
        torch.testing.assert_close(grads[name], numeric, rtol=1e-5, atol=1e-7)


def test_phantom_gradient_approaches_the_implicit_one(grad_problem):
    U, weights = grad_problem
    implicit = _grads(_module("implicit"), U, weights)
    close = _grads(_module("phantom", steps=300), U, weights)
    rough = _grads(_module("phantom", steps=1), U, weights)
    for name in implicit:
        torch.testing.assert_close(close[name], implicit[name], rtol=1e-6, atol=1e-8)
    assert any(not torch.allclose(rough[n], implicit[n], rtol=1e-3) for n in implicit)


# ---------------------------------------------------------------- convergence reporting
def test_non_convergence_warns_once_per_fit_with_the_residual():
    X, y = make_classification(200, 8, random_state=0)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        clf = ImplicitClassifier(hidden_size=16, max_iter=2, solver_tol=1e-10, max_epochs=3,
                                 random_state=0).fit(X, y)
    ours = [w for w in caught if issubclass(w.category, EquilibriumConvergenceWarning)]
    assert len(ours) == 1 and "residual" in str(ours[0].message)
    assert len(clf.forward_iterations_) == clf.n_iter_ == 3
    assert clf.fraction_converged_[-1] < 1.0
    with pytest.warns(EquilibriumConvergenceWarning, match="prediction"):
        proba = clf.predict_proba(X)
    assert np.all(np.isfinite(proba))


# ---------------------------------------------------------------- structure
def test_upper_structure_is_strictly_upper_triangular():
    X, y = make_classification(150, 6, random_state=0)
    clf = ImplicitClassifier(hidden_size=10, structure="upper", max_epochs=3,
                             random_state=0).fit(X, y)
    A = clf.module_.matrix_A().detach().cpu().numpy()
    np.testing.assert_array_equal(np.tril(A), 0)
    assert clf.forward_iterations_[-1] <= 11  # nilpotent: exact after at most n steps


def test_low_rank_structure_has_the_requested_rank():
    X, y = make_classification(150, 6, random_state=0)
    clf = ImplicitClassifier(hidden_size=12, structure="low_rank", rank=3, max_epochs=3,
                             learning_rate=0.05, random_state=0).fit(X, y)
    A = clf.module_.matrix_A().detach().double().cpu().numpy()
    assert np.linalg.matrix_rank(A, tol=1e-6) <= 3
    assert clf.A_inf_norm_ <= 0.95 + 1e-5


def test_l1_penalty_shrinks_the_matrices():
    X, y = make_classification(200, 8, random_state=0)
    params = dict(hidden_size=16, max_epochs=20, learning_rate=0.01, random_state=0)
    plain = ImplicitClassifier(**params).fit(X, y)
    sparse = ImplicitClassifier(l1_penalty=0.01, **params).fit(X, y)
    assert sparse.module_.l1_norm().item() < 0.8 * plain.module_.l1_norm().item()


# ---------------------------------------------------------------- MLP embedding
@pytest.mark.parametrize("hidden, activation", [((20, 15), "relu"), ((12,), "tanh"),
                                                 ((8, 8, 8), "logistic")])
def test_from_mlp_classifier_reproduces_predictions(hidden, activation):
    X, y = load_digits(n_class=4, return_X_y=True)
    mlp = MLPClassifier(hidden_layer_sizes=hidden, activation=activation, max_iter=30,
                        random_state=0).fit(X, y)
    imp = ImplicitClassifier.from_mlp(mlp, dtype="float64", device="cpu")
    np.testing.assert_array_equal(imp.predict(X), mlp.predict(X))
    np.testing.assert_allclose(imp.predict_proba(X), mlp.predict_proba(X), rtol=1e-9, atol=1e-12)
    A = imp.module_.matrix_A().detach().numpy()
    np.testing.assert_array_equal(np.tril(A), 0)


def test_from_mlp_binary_and_regressor():
    X, y = make_classification(200, 6, random_state=0)
    mlp = MLPClassifier(hidden_layer_sizes=(10, 5), max_iter=50, random_state=0).fit(X, y)
    imp = ImplicitClassifier.from_mlp(mlp, dtype="float64")
    np.testing.assert_allclose(imp.predict_proba(X), mlp.predict_proba(X), rtol=1e-9)
    reg = MLPRegressor(hidden_layer_sizes=(10, 6), max_iter=50, random_state=0).fit(X, X[:, :2])
    imp = ImplicitRegressor.from_mlp(reg, dtype="float64")
    np.testing.assert_allclose(imp.predict(X), reg.predict(X), rtol=1e-9, atol=1e-12)
    with pytest.raises(TypeError, match="MLPRegressor"):
        ImplicitRegressor.from_mlp(mlp)


# ---------------------------------------------------------------- robustness bound
def test_robustness_bound_holds_for_random_perturbations():
    X, y = make_classification(200, 6, random_state=0)
    reg = ImplicitRegressor(hidden_size=12, max_epochs=20, learning_rate=0.01, dtype="float64",
                            solver_tol=1e-10, max_iter=500, random_state=0).fit(X, y)
    sigma = 0.05
    bound = reg.robustness_bound(sigma)
    rng = np.random.RandomState(0)
    base = reg.predict(X[:50])
    worst = 0.0
    for _ in range(20):
        delta = rng.choice([-sigma, sigma], size=X[:50].shape)  # vertices of the box
        worst = max(worst, np.abs(reg.predict(X[:50] + delta) - base).max())
    assert worst <= bound[0] + 1e-9
    assert worst > 0


def test_robustness_bound_needs_the_perron_frobenius_condition():
    X, y = make_classification(100, 4, random_state=0)
    reg = ImplicitRegressor(hidden_size=5, max_epochs=1, random_state=0).fit(X, y)
    with torch.no_grad():
        reg.module_.A.fill_(0.5)  # |A| has spectral radius 2.5
    with pytest.raises(ValueError, match="Perron-Frobenius"):
        reg.robustness_bound(0.1)


# ---------------------------------------------------------------- sklearn integration
def test_string_labels_class_weight_and_pipeline_search():
    X, y = make_classification(240, 6, n_informative=4, n_classes=3, random_state=0)
    labels = np.array(["ant", "bee", "cat"])[y]
    pipe = make_pipeline(StandardScaler(), ImplicitClassifier(
        hidden_size=16, max_epochs=15, learning_rate=0.01, class_weight="balanced",
        random_state=0))
    search = GridSearchCV(pipe, {"implicitclassifier__hidden_size": [8, 16]}, cv=2).fit(X, labels)
    assert set(search.predict(X)) <= set(labels)
    assert search.best_score_ > 0.6
    scores = cross_val_score(pipe, X, labels, cv=2)
    assert scores.mean() > 0.6


def test_multioutput_regression_and_pickle():
    rng = np.random.RandomState(0)
    X = rng.normal(size=(200, 4))
    Y = np.c_[X[:, 0] + X[:, 1], np.tanh(X[:, 2])]
    reg = ImplicitRegressor(hidden_size=16, max_epochs=60, learning_rate=0.01,
                            random_state=0).fit(X, Y)
    assert reg.predict(X).shape == (200, 2)
    assert reg.score(X, Y) > 0.8
    loaded = pickle.loads(pickle.dumps(reg))
    np.testing.assert_array_equal(loaded.predict(X), reg.predict(X))


def test_anderson_and_picard_agree_on_a_fitted_model():
    X, y = make_classification(150, 6, random_state=0)
    clf = ImplicitClassifier(hidden_size=16, max_epochs=5, dtype="float64", solver_tol=1e-10,
                             max_iter=1000, random_state=0).fit(X, y)
    picard_proba = clf.predict_proba(X)
    clf.module_.solver = "anderson"
    np.testing.assert_allclose(clf.predict_proba(X), picard_proba, atol=1e-8)


@pytest.mark.parametrize("solver", ["anderson", "picard"])
def test_scheduled_training_matches_reference_solves(solver):
    """A fit with the fast training path (warm starts, scheduled tolerance and tests)
    and the same fit with the reference solvers at solver_tol in every training solve
    end at nearby weights, and each model's predictions are its reference equilibria."""
    from skinverse.implicit import _module as module_file
    from skinverse.implicit._solvers import REFERENCE_SOLVERS, picard_reference

    X, y = make_classification(200, 6, random_state=0)
    params = {"hidden_size": 12, "max_epochs": 15, "dtype": "float64", "solver_tol": 1e-8,
              "max_iter": 500, "random_state": 0, "solver": solver}
    fast = ImplicitClassifier(**params).fit(X, y)
    saved = dict(module_file.SOLVERS), ImplicitModule._tol, ImplicitModule._solve_options
    module_file.SOLVERS.update(REFERENCE_SOLVERS)
    ImplicitModule._tol = lambda self: self.solver_tol
    ImplicitModule._solve_options = lambda self, kind: {}
    try:
        reference = ImplicitClassifier(**params).fit(X, y)
    finally:
        module_file.SOLVERS.update(saved[0])
        ImplicitModule._tol, ImplicitModule._solve_options = saved[1], saved[2]
    assert fast.forward_iterations_[-1] < reference.forward_iterations_[-1]
    for a, b in zip(fast.get_matrices(), reference.get_matrices()):
        np.testing.assert_allclose(a, b, atol=1e-4)  # 2e-5 apart: training solves at 1e-6
    np.testing.assert_allclose(fast.predict_proba(X), reference.predict_proba(X), atol=1e-4)
    # the fitted model's equilibria: the fast prediction solve against a reference solve
    module = fast.module_
    U = torch.as_tensor(X)
    with torch.no_grad():
        A = module.matrix_A()
        injected = torch.addmm(module.b, U, module.B.T)
        z_ref, _ = picard_reference(lambda z, c: module.phi(torch.addmm(c, z, A.T)),
                                    torch.zeros_like(injected), context=(injected,),
                                    max_iter=5000, tol=1e-14)
        z_fast, _ = module.equilibrium(A, injected)
    np.testing.assert_allclose(z_fast.numpy(), z_ref.numpy(), rtol=0, atol=1e-6)


def test_subset_predictions_agree_to_float32_precision():
    X, y = make_classification(100, 6, random_state=0)
    clf = ImplicitClassifier(hidden_size=16, max_epochs=5, random_state=0).fit(X, y)
    full = clf.decision_function(X)
    parts = np.concatenate([clf.decision_function(X[i : i + 7]) for i in range(0, 100, 7)])
    np.testing.assert_allclose(parts, full, rtol=1e-5, atol=1e-6)


def test_plot_structure_draws_the_block_matrix():
    matplotlib = pytest.importorskip("matplotlib")
    matplotlib.use("Agg")
    X, y = make_classification(100, 5, random_state=0)
    clf = ImplicitClassifier(hidden_size=7, max_epochs=1, random_state=0).fit(X, y)
    ax = clf.plot_structure()
    assert ax.images[0].get_array().shape == (7 + 1, 7 + 5)


# ---------------------------------------------------------------- bad input
def test_bad_inputs_get_clear_errors():
    X, y = make_classification(60, 4, random_state=0)
    with pytest.raises(ValueError, match="1 class"):
        ImplicitClassifier(max_epochs=1).fit(X, np.zeros(60))
    with pytest.raises(ValueError, match="could not convert|numeric"):
        ImplicitClassifier(max_epochs=1).fit(np.array([["a", "b"]] * 60), y)
    with pytest.raises(ValueError, match="needs activation='relu'"):
        ImplicitClassifier(well_posedness="monotone", activation="tanh", max_epochs=1).fit(X, y)
    with pytest.raises(ValueError, match="increasing and non-expansive"):
        ImplicitClassifier(activation=(lambda x: 2 * x, lambda x: 2 + 0 * x),
                           max_epochs=1).fit(X, y)
    with pytest.raises(ValueError, match="does not match"):
        ImplicitClassifier(activation=(torch.tanh, lambda x: 0 * x), max_epochs=1).fit(X, y)
    fitted = ImplicitClassifier(hidden_size=4, max_epochs=1).fit(X, y)
    with pytest.raises(ValueError, match="4 features"):
        fitted.predict(X[:, :3])


def test_user_activation_pair_trains():
    X, y = make_classification(150, 5, random_state=0)

    def softsign(x):
        return x / (1 + x.abs())

    def softsign_grad(x):
        return 1 / (1 + x.abs()) ** 2

    clf = ImplicitClassifier(hidden_size=8, activation=(softsign, softsign_grad), max_epochs=30,
                             learning_rate=0.01, random_state=0).fit(X, y)
    assert clf.score(X, y) > 0.8
