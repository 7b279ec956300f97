"""Autograph leaves Keras 2 (tf_keras) unconverted, as TensorFlow means it to leave Keras.

Inside a tf.function, autograph rewrites every Python function it meets into graph code unless
the function's module is on its do-not-convert list. That list holds 'keras', where Keras 2
lived up to TensorFlow 2.15, but not 'tf_keras', where it lives under TF_USE_LEGACY_KERAS=1
(STACK.md): so each trace of the model (building it, the first training and validation steps,
the calibration's predictions, the export's signatures) transpiled Keras's own layers,
optimizer and training step again, and each input pipeline that applies the Transform's layer
(a Keras 2 model) to raw examples transpiled it too. The same code ran unconverted as 'keras'
through TF 2.15. The project's own layers are still converted, as Keras converts any subclassed
layer's call.
Measured by `python -m bench.trace_cost` (bench/results/trace_cost.md).
"""

from tensorflow.python.autograph.core import config as autograph_config

KERAS_2 = 'tf_keras'


def leave_keras_2_unconverted() -> None:
    """Puts tf_keras on autograph's do-not-convert list (once per process)."""
    rules = autograph_config.CONVERSION_RULES
    if not any(isinstance(rule, autograph_config.DoNotConvert) and rule.matches(KERAS_2)
               for rule in rules):
        autograph_config.CONVERSION_RULES = (autograph_config.DoNotConvert(KERAS_2),) + rules
