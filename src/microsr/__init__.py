"""microsr: deep-learning super-resolution of microCT bone scans, validated with bone
morphometry.

The Python API (:mod:`microsr.api`) is available from the package itself::

    import microsr

    hr = microsr.read_volume("hr.mha")
    lr = microsr.simulate_acquisition(hr)

Its names load on first use (module ``__getattr__``), so ``import microsr`` imports
neither torch nor ITK.
"""

import importlib

__version__ = "0.2.0"

#: The configs :mod:`microsr.api`'s functions take, re-exported (loaded on first use).
_CONFIGS = (
    "AcquisitionConfig",
    "DaskConfig",
    "ModelConfig",
    "MorphometryConfig",
    "PredictOptions",
    "PrepareConfig",
    "ScoreConfig",
    "StudyConfig",
    "TrainConfig",
)
#: The data types and functions of :mod:`microsr.api`, re-exported; the one list of them
#: (``microsr.api.__all__`` is this: the root cannot import the facade, which imports
#: every layer).
_FUNCTIONS = (
    "Calibration",
    "Volume",
    "compute_morphometry",
    "evaluate",
    "evaluate_dataset",
    "fit_acquisition",
    "load_model",
    "make_phantom",
    "predict",
    "predict_batch",
    "predict_file",
    "prepare_dataset",
    "read_volume",
    "run_study",
    "simulate_acquisition",
    "train",
    "train_config",
    "write_evaluation",
    "write_volume",
)
_API = _CONFIGS + _FUNCTIONS

__all__ = ["__version__", *_API]


def __getattr__(name: str):
    if name in _API:
        # Loaded by name on first use, once this package is complete: every layer imports
        # the root (for __version__), so the facade, which imports every layer, is an
        # alias here, not an import of the root (tests/test_layering.py).
        return getattr(importlib.import_module("microsr.api"), name)
    raise AttributeError(f"module 'microsr' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted({*globals(), *_API})
