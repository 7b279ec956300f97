"""The module file given to the TFX Transform, Tuner and Trainer.

TFX packages this folder into a wheel whose version is a hash of its files, so editing any
trainer module invalidates the cached Transform and Trainer runs. The functions themselves are
imported from the installed `trainer` package.
"""

from trainer.preprocessing import preprocessing_fn  # noqa: F401  (looked up by name by TFX)
from trainer.train import run_fn  # noqa: F401
from trainer.tuning import tuner_fn  # noqa: F401
