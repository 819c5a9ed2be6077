"""``tune``: Optuna studies of short real fine-tuning trials, per method.

>>> from tuner import StudySettings, run_study          # doctest: +SKIP
>>> result = run_study(StudySettings(method="qlora", n_trials=8))
>>> result.best.training_args["learning_rate"]

``best_config(study)`` turns any study's best trial into a :class:`BestConfig` (written by
``write_best_config`` as ``best_config.yaml`` and a Python snippet); ``train_best`` trains one for
full length. The command line (``tune study|space|best|train``) is a thin layer over these.
"""

import logging

# bitsandbytes' CPU backend warns on import that an optional fused-kernel package is missing; we only
# use its NF4 quantise/dequantise functions, which need no such kernel, so the warning is only noise.
logging.getLogger("bitsandbytes.backends.cpu.ops").setLevel(logging.ERROR)

# The exports load torch, transformers and peft (seconds); they are imported when first used, so
# `tune --help` and `tune space` answer at once.
_EXPORTS = {
    "BestConfig": "tuner._export",
    "python_snippet": "tuner._export",
    "write_best_config": "tuner._export",
    "StudyError": "tuner._study",
    "StudyInterrupted": "tuner._study",
    "StudyResult": "tuner._study",
    "StudySettings": "tuner._study",
    "best_config": "tuner._study",
    "run_study": "tuner._study",
    "train_best": "tuner._train",
    "available_methods": "tuner.methods",
    "get_method": "tuner.methods",
}


def __getattr__(name: str):
    if name not in _EXPORTS:
        raise AttributeError(f"module 'tuner' has no attribute {name!r}")
    import importlib

    return getattr(importlib.import_module(_EXPORTS[name]), name)


__all__ = [
    "BestConfig",
    "StudyError",
    "StudyInterrupted",
    "StudyResult",
    "StudySettings",
    "available_methods",
    "best_config",
    "get_method",
    "python_snippet",
    "run_study",
    "train_best",
    "write_best_config",
]
