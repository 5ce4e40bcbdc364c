"""Helpers of the sphinx-gallery configuration (importable by name, so that Sphinx can
pickle the configuration)."""

import os


def reset_state(gallery_conf, fname):
    """Every example starts from the same state: as many torch threads as
    ``OMP_NUM_THREADS`` (1 in CI), scikit-learn's metadata routing off."""
    import sklearn
    import torch

    torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS", "1")))
    sklearn.set_config(enable_metadata_routing=False)
