"""Benchmarks, not imported by the pipeline (bench/README.md).

TFX 1.16 and the project's model need Keras 2 (tf_keras): every benchmark entry point imports
TensorFlow with TF_USE_LEGACY_KERAS=1, set here before anything imports it, so that
`python -m bench.<name>` works without the Makefile (which exports it too).
"""

import os

os.environ.setdefault('TF_USE_LEGACY_KERAS', '1')
