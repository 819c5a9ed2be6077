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

from tuner._export import BestConfig, python_snippet, write_best_config
from tuner._study import StudyError, StudyInterrupted, StudyResult, StudySettings, best_config, run_study
from tuner._train import train_best
from tuner.methods import available_methods, get_method

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
