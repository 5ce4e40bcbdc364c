"""Sphinx configuration for the skinverse documentation."""

import os
import sys

# Before torch is imported (by skinverse): the gallery runs its examples on one thread
# unless the caller says otherwise, as CI does.
os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("MPLBACKEND", "Agg")

import skinverse  # noqa: E402

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "sphinxext"))

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
    "sphinx_gallery.gen_gallery",
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
html_css_files = ["skinverse.css"]

# -- sphinx-gallery ---------------------------------------------------------------------
# As scikit-learn's doc/conf.py: every script examples/<topic>/plot_*.py becomes a page of
# auto_examples/ with its printed output and figures, and every skinverse object an
# example uses gets a "Gallery examples" section on its API page (the backreferences
# written to generated/ are included by the templates in _templates/autosummary).
# A failing example fails the build.
sphinx_gallery_conf = {
    "examples_dirs": ["../examples"],
    "gallery_dirs": ["auto_examples"],
    "backreferences_dir": "generated",
    "doc_module": ("skinverse",),
    "filename_pattern": r"/plot_",
    "subsection_order": [
        "../examples/rim",
        "../examples/imnn",
        "../examples/implicit",
        "../examples/unrolled",
        "../examples/metrics",
    ],
    "within_subsection_order": "FileNameSortKey",
    "reset_modules": ("matplotlib", "skinverse_gallery.reset_state"),
    "remove_config_comments": True,
    "inspect_global_variables": False,
    "show_memory": False,
    "min_reported_time": 0,
    "abort_on_example_error": False,
}
