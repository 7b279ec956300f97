"""The Tuner's search space (trainer/search_space.py) and TFX's Tuner executor running tuner_fn
(trainer/tuning.py) on the tiny real Transform's output; run_fn applying its best trial."""

import dataclasses
import json
import os

import pytest
import tensorflow as tf
from conftest import SPEC, write_transformed_examples
from tfx import v1 as tfx
from tfx.components.tuner import executor as tuner_executor
from tfx.types import standard_artifacts

from pipeline.config import ConfigError, load_config
from trainer import search_space, train
from trainer.config import ModelConfig
from trainer.warmup import serialize_example

SMALL = ModelConfig(num_experts=2, expert_units=(8, 4), tower_units=(4,), max_embedding_dim=4,
                    dense_projection_dim=4, batch_size=16, train_steps=4, eval_steps=2,
                    steps_per_validation=2, seed=0, calibration=False)
TRIALS = 3


def test_configured_settings_are_the_first_point_of_the_space():
    """The defaults are a point of the space, and a configured value outside a range (here
    batch 16, 2 experts of width 8) joins it: the first trial reproduces the configuration."""
    for config in (ModelConfig(), SMALL):
        hp = search_space.hyperparameters(config)
        assert search_space.apply(config, hp.values) == config


def test_apply_rejects_a_value_that_is_no_model_setting():
    with pytest.raises(ValueError, match=r"\['units'\] are not model settings"):
        search_space.apply(SMALL, {'units': 3, 'tuner/epochs': 2})


def test_tuner_settings_are_checked_and_overridable():
    config = load_config(env={'FUNNEL_TUNER_ENABLED': 'true', 'FUNNEL_TUNER_MAX_TRIALS': '4'})
    assert config.tuner.enabled and config.tuner.max_trials == 4
    assert config.tuner_custom_config['tuner']['max_trials'] == 4
    with pytest.raises(ConfigError, match='FUNNEL_TUNER_SAMPLE_ROWS'):
        load_config(env={'FUNNEL_TUNER_SAMPLE_ROWS': '0'})


def _write_raw_examples(frame, path):
    """The rows before the Transform, as ExampleGen writes them (gzipped raw tf.Examples)."""
    with tf.io.TFRecordWriter(str(path), 'GZIP') as writer:
        for row in frame.to_dict('records'):
            writer.write(serialize_example(row))


@pytest.fixture(scope='module', params=[True, False], ids=['materialized', 'raw examples'])
def search(request, transform_run, tmp_path_factory):
    """TFX's Tuner executor on the tiny Transform output (train and validation splits): its
    transformed examples, or (model.materialize_transform false) the raw ones; the best
    hyperparameters and tuner results files it writes, and the model settings."""
    config = dataclasses.replace(SMALL, materialize_transform=request.param)
    root = tmp_path_factory.mktemp('tuner')
    examples = standard_artifacts.Examples()
    examples.uri = str(root / 'examples')
    examples.split_names = json.dumps(['train', 'validation'])
    for split in ('train', 'validation'):
        os.makedirs(root / 'examples' / f'Split-{split}')
        path = root / 'examples' / f'Split-{split}' / 'data.tfrecord.gz'
        if request.param:
            write_transformed_examples(transform_run.train_rows, transform_run.tft_output, path)
        else:
            _write_raw_examples(transform_run.train_df, path)
    graph = standard_artifacts.TransformGraph()
    graph.uri = transform_run.transform_fn_dir
    outputs = {'best_hyperparameters': standard_artifacts.HyperParameters(),
               'tuner_results': standard_artifacts.TunerResults()}
    for key, artifact in outputs.items():
        artifact.uri = str(root / key)
        os.makedirs(artifact.uri)
    settings = search_space.TunerConfig(enabled=True, max_trials=TRIALS, sample_rows=50,
                                        trial_epochs=1, validation_rows=50)
    exec_properties = {
        'module_path': 'trainer.tuning', 'tuner_fn': 'trainer.tuning.tuner_fn',
        'train_args': json.dumps({'splits': ['train']}),
        'eval_args': json.dumps({'splits': ['validation']}),
        'custom_config': json.dumps({'model': dataclasses.asdict(config),
                                     'features': SPEC.to_dict(),
                                     'tuner': dataclasses.asdict(settings)})}
    executor = tuner_executor.Executor(tuner_executor.base_executor.BaseExecutor.Context(
        tmp_dir=str(root / 'tmp'), unique_id='1'))
    executor.Do({'examples': [examples], 'transform_graph': [graph]},
                {k: [v] for k, v in outputs.items()}, exec_properties)
    with open(root / 'best_hyperparameters' / 'best_hyperparameters.txt') as f:
        best = json.load(f)
    with open(root / 'tuner_results' / 'tuner_results.json') as f:
        results = json.load(f)
    return best, results, root, config


@pytest.mark.slow
def test_every_trial_ran_and_the_first_is_the_configuration(search):
    best, results, _, _ = search
    assert len(results) == TRIALS
    defaults = search_space.hyperparameters(SMALL).values
    assert any(all(row[k] == v for k, v in defaults.items()) for row in results)
    assert all(0.0 <= row['score'] <= 1.0 for row in results)
    assert set(best['values']) == set(defaults)


@pytest.mark.slow
def test_run_fn_trains_with_the_best_hyperparameters(search, transform_run, tmp_path):
    """The exported model has the best trial's experts, their width and the embedding width
    (set here to values the small configuration does not have, so that the test can fail)."""
    best, _, root, config = search
    best['values'].update({'num_experts': 3, search_space.EXPERT_WIDTH: 32,
                           'max_embedding_dim': 2})
    files = [str(root / 'examples' / 'Split-train' / 'data.tfrecord.gz')]
    fn_args = tfx.components.FnArgs(
        custom_config={'model': dataclasses.asdict(config), 'features': SPEC.to_dict()},
        transform_output=transform_run.transform_fn_dir, train_files=files, eval_files=files,
        model_run_dir=str(tmp_path / 'run'), serving_model_dir=str(tmp_path / 'model'),
        base_model=None, hyperparameters=best)
    train.run_fn(fn_args)
    shapes = {v.name: v.shape for v in tf.saved_model.load(str(tmp_path / 'model')).variables}
    experts = {name.split('/')[1] for name in shapes if name.startswith('mmoe/expert_')}
    assert len(experts) == 3
    assert shapes['mmoe/expert_0/dense_0/kernel:0'][1] == 32
    assert shapes['mmoe/expert_0/dense_1/kernel:0'][1] == 16
    assert shapes['user_id_embedding/embeddings:0'][1] == 2
