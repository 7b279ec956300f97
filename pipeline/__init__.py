"""The pipeline's definition and its local runner.

TFX 1.16 and the project's model need Keras 2 (tf_keras), which TensorFlow picks when
TF_USE_LEGACY_KERAS=1 is set before its first import; without it a run got as far as the
Trainer's first batch and failed there with Keras 3's `KeyError: 'p_click'`. The local runner
(`python -m pipeline.local_runner`, the TFX CLI's runner file) imports this package before
TensorFlow, so it is set here (the Makefile exports it too).
"""

import os

os.environ.setdefault('TF_USE_LEGACY_KERAS', '1')
