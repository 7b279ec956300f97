"""The Evaluator's TFMA configuration: which metrics, on which slices, and when to bless.

Metrics per task: AUC, log loss, calibration (mean prediction / mean label), mean prediction,
mean label, example count and a calibration plot (the report's reliability diagrams). p_click
and p_conversion are scored on all impressions, p_cvr on clicked impressions (the slice
click = 1). Blessing also needs the calibration of p_click and p_conversion on the overall slice
to be compatible with [min_calibration, max_calibration] given the eval split's positives (its
sampling interval must reach into the band: pipeline/eval_metrics.py); calibration is
reported on every slice but gated on the overall one only. The model's own compiled Keras
metrics are left out: its approximate `auc` would share a name with TFMA's. Blessing thresholds
apply only to the slice each task is judged on: a small slice without positives has an
undefined AUC and must not block a push. The label columns and the extra slices come from the
feature spec (trainer/features.py).
"""

import json
from typing import List

import tensorflow_model_analysis as tfma

from pipeline import eval_metrics
from pipeline.config import EvaluationConfig
from trainer import features

OVERALL_SLICE = tfma.SlicingSpec()


def _shared(class_name: str, **fields) -> tfma.MetricConfig:
    """TFMA's (or Keras's) metric `class_name`, from the combiner all metrics of a model output
    share (pipeline/eval_metrics.py)."""
    return tfma.MetricConfig(class_name=eval_metrics.PREFIX + class_name,
                             module=eval_metrics.__name__, **fields)


def _calibration_metrics(output: str, config: EvaluationConfig) -> List[tfma.MetricConfig]:
    """Calibration on every slice; for p_click and p_conversion (what a bidder multiplies; p_cvr
    is their ratio) also the ends of its sampling interval, gated against the band on the
    overall slice (pipeline/eval_metrics.py)."""
    metrics = [_shared('Calibration')]
    if output == features.P_CVR or not config.gate_calibration:
        return metrics
    for end, bound in (('lower', {'upper_bound': {'value': config.max_calibration}}),
                       ('upper', {'lower_bound': {'value': config.min_calibration}})):
        threshold = tfma.MetricThreshold(value_threshold=tfma.GenericValueThreshold(**bound))
        metrics.append(tfma.MetricConfig(
            class_name=eval_metrics.CalibrationBound.__name__, module=eval_metrics.__name__,
            config=json.dumps({'name': f'calibration_{end}_bound', 'end': end,
                               'z': config.calibration_interval_z}),
            per_slice_thresholds=[tfma.PerSliceMetricThreshold(slicing_specs=[OVERALL_SLICE],
                                                               threshold=threshold)]))
    return metrics


def _task_metrics(output: str, min_auc: float, judged_on: tfma.SlicingSpec,
                  config: EvaluationConfig) -> tfma.MetricsSpec:
    """Metrics of one model output, with its AUC floor, no-regression threshold and, for
    p_click and p_conversion, the calibration band."""
    auc_threshold = tfma.MetricThreshold(
        value_threshold=tfma.GenericValueThreshold(lower_bound={'value': min_auc}),
        change_threshold=tfma.GenericChangeThreshold(
            direction=tfma.MetricDirection.HIGHER_IS_BETTER,
            absolute={'value': -config.max_auc_regression}))
    return tfma.MetricsSpec(output_names=[output], metrics=[
        _shared('AUC', per_slice_thresholds=[
            tfma.PerSliceMetricThreshold(slicing_specs=[judged_on], threshold=auc_threshold)]),
        _shared('BinaryCrossentropy', config='{"name": "log_loss"}'),
        *_calibration_metrics(output, config),
        _shared('MeanPrediction'),
        _shared('MeanLabel'),
        _shared('ExampleCount'),
        _shared('CalibrationPlot', config=json.dumps(
            {'num_buckets': config.calibration_plot_buckets})),
    ])


def make_eval_config(config: EvaluationConfig, spec: features.FeatureSpec) -> tfma.EvalConfig:
    """Label keys and slices follow the feature spec's raw column names."""
    clicked_slice = tfma.SlicingSpec(feature_values={spec.click_label: '1'})
    return tfma.EvalConfig(
        model_specs=[tfma.ModelSpec(
            # Told, not detected: TFMA would load each model once more to find its type.
            model_type=tfma.TF_KERAS,
            signature_name=features.DEFAULT_SIGNATURE,
            label_keys={output: spec.raw_labels[label]
                        for output, label in features.OUTPUT_LABELS.items()})],
        slicing_specs=[OVERALL_SLICE, clicked_slice] + [
            tfma.SlicingSpec(feature_keys=[name]) for name in spec.slices],
        metrics_specs=[
            _task_metrics(features.P_CLICK, config.min_click_auc, OVERALL_SLICE, config),
            _task_metrics(features.P_CONVERSION, config.min_conversion_auc, OVERALL_SLICE,
                          config),
            _task_metrics(features.P_CVR, config.min_cvr_auc, clicked_slice, config),
        ],
        options=tfma.Options(include_default_metrics={'value': False}))
