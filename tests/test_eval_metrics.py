"""The Evaluator's eval config (one shared combiner per model output, pipeline/eval_metrics.py)
against the same config with TFMA's and Keras's own metrics, each its own combiner: a candidate
and a baseline, every slice; every number (metrics, diffs vs baseline, calibration-plot buckets)
within 0.001, the same blessing, and the calibration bounds (no TFMA counterpart) as computed
from TFMA's own sums. TFMA scores predictions stored in the examples (ModelSpec.prediction_keys),
so no model is needed; the real model's comparison is
`python -m bench.evaluator_cost --variants before,pipeline`."""

import dataclasses
import os

import apache_beam as beam
import numpy as np
import pytest
import tensorflow as tf
import tensorflow_model_analysis as tfma
from conftest import SPEC
from tensorflow_model_analysis.evaluators import metrics_plots_and_validations_evaluator
from tensorflow_model_analysis.extractors import (
    example_weights_extractor,
    features_extractor,
    labels_extractor,
    materialized_predictions_extractor,
    slice_key_extractor,
    unbatch_extractor,
)
from tensorflow_model_analysis.metrics import metric_specs
from tfx_bsl.tfxio import tf_example_record

from bench.evaluator_cost import largest_difference, numbers, tfma_own_metrics
from pipeline import eval_metrics
from pipeline.config import EvaluationConfig
from pipeline.eval_config import make_eval_config
from trainer import features

MODELS = (tfma.CANDIDATE_KEY, tfma.BASELINE_KEY)


def _write_examples(path: str, rows: int, seed: int):
    """Impressions with funnel labels and two models' noisy predictions, some at exactly 0 and 1
    (the histogram's edge buckets; TFMA's native log loss, unclipped, is infinite there where
    the Keras one is not); slices of very different sizes."""
    rng = np.random.default_rng(seed)
    p_click = rng.beta(0.5, 12, rows)
    p_cvr = rng.beta(0.8, 8, rows)
    click = rng.random(rows) < p_click
    conversion = click & (rng.random(rows) < p_cvr)
    devices = rng.choice([b'mobile', b'desktop', b'tablet'], rows, p=[0.7, 0.28, 0.02])
    positions = rng.zipf(1.6, rows) % 7
    with tf.io.TFRecordWriter(path) as writer:
        for i in range(rows):
            feature = {
                SPEC.raw_labels[features.CLICK_LABEL]: [int(click[i])],
                SPEC.raw_labels[features.CONVERSION_LABEL]: [int(conversion[i])],
                'device': [devices[i]], 'ad_position': [int(positions[i])]}
            for model in MODELS:
                noise = rng.lognormal(0, 0.5 if model == tfma.CANDIDATE_KEY else 0.9, 2)
                click_score = min(1.0, p_click[i] * noise[0])
                cvr_score = min(1.0, p_cvr[i] * noise[1])
                if i % 97 == 0:
                    click_score = float(i % 2)
                scores = {features.P_CLICK: click_score, features.P_CVR: cvr_score,
                          features.P_CONVERSION: click_score * cvr_score}
                feature.update({f'{model}_{name}': [value] for name, value in scores.items()})
            writer.write(tf.train.Example(features=tf.train.Features(feature={
                name: (tf.train.Feature(bytes_list=tf.train.BytesList(value=value))
                       if isinstance(value[0], bytes) else
                       tf.train.Feature(int64_list=tf.train.Int64List(value=value))
                       if isinstance(value[0], int) else
                       tf.train.Feature(float_list=tf.train.FloatList(value=value)))
                for name, value in feature.items()})).SerializeToString())


def _evaluate(eval_config: tfma.EvalConfig, data: str, out: str):
    """TFMA on the stored predictions of both models: (every number, validation_ok, metric
    values by (slice, model, output, name))."""
    spec = eval_config.model_specs[0]
    spec.ClearField('signature_name')
    for output in features.OUTPUT_LABELS:
        spec.prediction_keys[output] = f'candidate_{output}'
    eval_config = tfma.utils.update_eval_config_with_defaults(eval_config, has_baseline=True)
    for spec in eval_config.model_specs:
        for output in features.OUTPUT_LABELS:
            spec.prediction_keys[output] = f'{spec.name}_{output}'
    # TFMA's own steps; run_model_analysis and the default_* helpers would drop the baseline
    # spec without model objects.
    extractors = [features_extractor.FeaturesExtractor(eval_config),
                  labels_extractor.LabelsExtractor(eval_config),
                  example_weights_extractor.ExampleWeightsExtractor(eval_config),
                  materialized_predictions_extractor.MaterializedPredictionsExtractor(
                      eval_config),
                  unbatch_extractor.UnbatchExtractor(),
                  slice_key_extractor.SliceKeyExtractor(eval_config=eval_config)]
    examples = tf_example_record.TFExampleRecord(
        data, raw_record_column_name=tfma.constants.ARROW_INPUT_COLUMN)
    with beam.Pipeline() as pipeline:
        _ = (pipeline | examples.BeamSource() | tfma.BatchedInputsToExtracts()
             | tfma.ExtractAndEvaluate(extractors, [
                 tfma.evaluators.MetricsPlotsAndValidationsEvaluator(eval_config=eval_config)])
             | tfma.WriteResults([tfma.writers.MetricsPlotsAndValidationsWriter(
                 output_paths={key: os.path.join(out, key) for key in (
                     'metrics', 'plots', 'attributions', 'validations')},
                 eval_config=eval_config)]))
    values = {(str(record.slice_key), entry.key.model_name, entry.key.output_name,
               entry.key.name): entry.value.double_value.value
              for record in tfma.load_metrics(out) for entry in record.metric_keys_and_values
              if not entry.key.is_diff}
    return numbers(out), tfma.load_validation_result(out).validation_ok, values


def test_one_combiner_per_model_output():
    """Every per-example computation of the eval config is the shared combiner, one per model
    and output."""
    eval_config = tfma.utils.update_eval_config_with_defaults(
        make_eval_config(EvaluationConfig(), SPEC), has_baseline=True)
    computations = metrics_plots_and_validations_evaluator._filter_and_separate_computations(
        metric_specs.to_computations(eval_config.metrics_specs, eval_config=eval_config))
    combined = [(type(c.combiner).__name__, c.keys[0].model_name, c.keys[0].output_name)
                for c in computations.non_derived_computations]
    assert sorted(combined) == sorted(('_SharedCombiner', model, output) for model in MODELS
                                      for output in features.OUTPUT_LABELS)


@pytest.mark.parametrize('rows,seed', [(3000, 0)])
def test_eval_config_gives_the_numbers_of_the_one_before(tmp_path, rows, seed):
    data = os.path.join(tmp_path, 'examples.tfrecord')
    _write_examples(data, rows, seed)
    config = dataclasses.replace(EvaluationConfig(), min_calibration=0.5, max_calibration=2.0)
    new = _evaluate(make_eval_config(config, SPEC), data, os.path.join(tmp_path, 'new'))
    old_config = make_eval_config(config, SPEC)
    tfma_own_metrics(old_config)
    old = _evaluate(old_config, data, os.path.join(tmp_path, 'old'))

    difference, where = largest_difference(old[0], new[0])
    assert difference <= 1e-3, where
    assert new[1] == old[1]
    names = {path.split('"name": "')[1].split('"')[0] for path in new[0] if '"name"' in path}
    assert {'calibration', 'mean_label', 'mean_prediction', 'example_count'} <= names
    diffs = [path for path in new[0] if '"isDiff": true' in path and 'example_count' in path]
    assert diffs  # the diffs vs baseline are among the numbers compared

    tfma_values, bounds_checked = old[2], 0
    for (slice_, model, output, name), value in new[2].items():
        if name.startswith('calibration_') and name.endswith('_bound'):
            count = tfma_values[slice_, model, output, 'example_count']
            expected = eval_metrics.bounds(
                tfma_values[slice_, model, output, 'mean_prediction'] * count,
                tfma_values[slice_, model, output, 'mean_label'] * count,
                config.calibration_interval_z)[name == 'calibration_upper_bound']
            assert value == pytest.approx(expected, rel=1e-6, nan_ok=True), (slice_, name)
            bounds_checked += 1
    assert bounds_checked >= 2 * 2 * len(MODELS)  # p_click, p_conversion; several slices
