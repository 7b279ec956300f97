"""The real model trained under tf.distribute.MirroredStrategy on two logical CPUs, then exported.

Logical devices can only be configured before TensorFlow initialises its runtime, which other
tests have done by then in the pytest process. So the training runs in a fresh process: this
file, run as a script, prints its findings as one JSON line and the test checks them. The data
are the tiny real Transform's outputs (tests/conftest.py), read as run_fn reads them
(trainer.train.train_input: into memory, then batches gathered per replica).
"""

import json
import os
import subprocess
import sys

import numpy as np
from conftest import RAW_LABELS, write_transformed_examples

TIMEOUT_SECONDS = 600
STEPS_PER_EPOCH = 20


def _train_on_two_cpus(transform_fn_dir: str, examples: str, raw_rows: str,
                       export_dir: str) -> dict:
    """Trains under MirroredStrategy(['/cpu:0', '/cpu:1']); what the test checks."""
    import tensorflow as tf

    cpu = tf.config.list_physical_devices('CPU')[0]
    tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)

    import tensorflow_transform as tft
    from conftest import SPEC

    from trainer import export, features, train
    from trainer.config import ModelConfig

    config = ModelConfig(num_experts=2, expert_units=(8,), tower_units=(4,), max_embedding_dim=4,
                         dense_projection_dim=4, batch_size=16, learning_rate=0.01, seed=0)
    tft_output = tft.TFTransformOutput(transform_fn_dir)
    data = train.train_input([examples], tft_output, config)

    tf.keras.utils.set_random_seed(config.seed)
    strategy = tf.distribute.MirroredStrategy(['/cpu:0', '/cpu:1'])
    with strategy.scope():
        model = train.build_compiled_model(config, tft_output, SPEC)
    initial_weights = [w.numpy() for w in model.trainable_weights]
    history = model.fit(data, epochs=2, steps_per_epoch=STEPS_PER_EPOCH, verbose=0)

    default_strategy = train.distribution_strategy()  # what run_fn picks without GPUs
    with default_strategy.scope():
        single_device_model = train.build_compiled_model(config, tft_output, SPEC)
    inputs = next(iter(data))[0]

    export.export_serving_model(model, tft_output, export_dir, SPEC)
    with open(raw_rows) as f:
        rows = json.load(f)
    raw_spec = tft_output.raw_feature_spec()
    served = tf.saved_model.load(export_dir).signatures[features.RAW_SIGNATURE](
        **{name: tf.constant([row[name] for row in rows], raw_spec[name].dtype)
           for name in rows[0]})

    def shapes(outputs):
        return {name: list(value.shape) for name, value in outputs.items()}

    return {
        'replicas': strategy.num_replicas_in_sync,
        'variable_devices': sorted(v.device for v in model.trainable_weights[0].values),
        'default_strategy_replicas': default_strategy.num_replicas_in_sync,
        'epoch_losses': history.history['loss'],
        'weights_changed': [not np.allclose(before, after.numpy())
                            for before, after in zip(initial_weights, model.trainable_weights)],
        'mirrored_shapes': shapes(model(inputs)),
        'single_device_shapes': shapes(single_device_model(inputs)),
        'served_shapes': shapes(served), 'served_rows': len(rows),
    }


def test_mirrored_training_on_two_cpus(transform_run, tmp_path):
    """Both replicas hold the weights and train; the loss falls; outputs keep their shapes with
    and without the strategy; the trained model exports and serves."""
    from trainer import features

    examples = tmp_path / 'transformed.tfrecord.gz'
    write_transformed_examples(transform_run.train_rows, transform_run.tft_output, examples)
    raw_rows = tmp_path / 'raw_rows.json'
    raw_rows.write_text(json.dumps(transform_run.probe_df.drop(columns=list(RAW_LABELS))
                                   .to_dict('records')))
    result = subprocess.run(
        [sys.executable, __file__, transform_run.transform_fn_dir, str(examples), str(raw_rows),
         str(tmp_path / 'serving_model')],
        capture_output=True, text=True, timeout=TIMEOUT_SECONDS,
        env={**os.environ, 'TF_USE_LEGACY_KERAS': '1', 'TF_CPP_MIN_LOG_LEVEL': '2'})
    assert result.returncode == 0, result.stderr[-4000:]
    found = json.loads(result.stdout.splitlines()[-1])

    assert found['replicas'] == 2 and found['default_strategy_replicas'] == 1
    assert [device.split('/')[-1] for device in found['variable_devices']] == [
        'device:CPU:0', 'device:CPU:1']
    first_epoch, second_epoch = found['epoch_losses']
    assert second_epoch < first_epoch
    assert all(found['weights_changed'])
    batch = found['mirrored_shapes'][features.P_CLICK][0]
    assert found['mirrored_shapes'] == found['single_device_shapes']
    assert set(found['mirrored_shapes']) == set(features.OUTPUTS) and batch == 16
    assert found['served_shapes'] == dict.fromkeys(features.OUTPUTS, [found['served_rows']])


if __name__ == '__main__':
    print(json.dumps(_train_on_two_cpus(*sys.argv[1:])))
