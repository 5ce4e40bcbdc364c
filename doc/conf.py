"""Sphinx configuration for the skinverse documentation."""

import skinverse

project = "skinverse"
author = "the skinverse developers"
copyright = "2026, the skinverse developers"
release = skinverse.__version__
version = release

extensions = [
    "sphinx.ext.autodoc",
    "sphinx.ext.autosummary",
    "sphinx.ext.mathjax",
    "sphinx.ext.intersphinx",
    "numpydoc",
]
autosummary_generate = True
# Methods generated or inherited from scikit-learn carry cross-references into
# scikit-learn's own docs, which are not built here (no network at build time).
autodoc_default_options = {
    "members": True,
    # Document what skinverse classes inherit from each other, not scikit-learn's API.
    "inherited-members": "BaseEstimator,ClassifierMixin,RegressorMixin,TransformerMixin,"
    "_MetadataRequester,_SetOutputMixin,Module",
    "exclude-members": ",".join(
        ["score"] + [f"set_{m}_request" for m in
                     ("fit", "partial_fit", "score", "predict", "transform", "inverse_transform")]
    ),
}
numpydoc_show_class_members = False
numpydoc_class_members_toctree = False
intersphinx_mapping = {}
templates_path = ["_templates"]
exclude_patterns = ["_build"]
html_theme = "alabaster"
html_static_path = ["_static"]
