"""Search spaces as data: one YAML file per fine-tuning method, and the loader that turns it into
Optuna calls (``SearchSpace.sample``) and trial configurations (``TrialConfig``).

>>> from search_spaces import load_space
>>> space = load_space("qlora")            # or load_space(path="my_space.yaml")
>>> space.defaults().training_args["learning_rate"]
0.0002

The YAML schema is documented in ``search_spaces/README.md``.
"""

from ._params import SpaceError
from ._space import METHODS, SearchSpace, TrialConfig, available_methods, load_space

__all__ = ["METHODS", "SearchSpace", "SpaceError", "TrialConfig", "available_methods", "load_space"]
