"""
==========================================================
Tuning a reconstruction with GridSearchCV (metadata routing)
==========================================================

DeepInPy ran its own hyperparameter search; with skinverse a scikit-learn
:class:`~sklearn.model_selection.GridSearchCV` does it, and the per-image coil maps and
masks follow each fold through scikit-learn's metadata routing.
"""

# %%
import sklearn
from sklearn.model_selection import GridSearchCV

from skinverse.datasets import make_mri_data, make_phantoms
from skinverse.unrolled import UnrolledRegressor

X, y, maps, masks = make_mri_data(make_phantoms(45, 20, random_state=0), n_coils=6,
                                  acceleration=3, noise_std=0.02, random_state=0)
sklearn.set_config(enable_metadata_routing=True)
estimator = UnrolledRegressor(method="cg-sense", learn_lam=False, cg_max_iter=30,
                              max_epochs=1, random_state=0)
estimator.set_fit_request(maps=True, masks=True, sample_weight=False)
estimator.set_score_request(maps=True, masks=True, sample_weight=False)
search = GridSearchCV(estimator, {"lam": [1e-3, 1e-2, 1e-1, 1.0]}, cv=3)
search.fit(X, y, maps=maps, masks=masks)
sklearn.set_config(enable_metadata_routing=False)
for lam, score in zip(search.cv_results_["param_lam"], search.cv_results_["mean_test_score"]):
    print(f"lambda = {lam:<7g} mean PSNR {score:.2f} dB")
print("best:", search.best_params_)
