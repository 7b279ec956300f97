"""Stock TFX: the same data, model and training steps through TFX's own components, wired as
TFX's templates wire them, for `make bench` to time beside the project's pipeline.

    python -m bench.stock_tfx      (the FUNNEL_* environment, as `python -m pipeline.local_runner`)

What is TFX's own here and not the project's: CsvExampleGen's executor (per-line Beam decoding,
every record reshuffled before the split is written; no input check), the Transform with its
defaults (statistics before and after, every split transformed and materialized), the Trainer's
and Evaluator's executors as they ship, TFMA's own metric implementations (each metric its own
combiner: bench/evaluator_cost.py's `tfma_own_metrics`, without the project's calibration bounds),
a LatestBlessedModelStrategy resolver for the baseline (as the templates) and the stock Pusher.
What is shared, so that the comparison is of the machinery and not of the work: the curated
schema (ImportSchemaGen, as the penguin template does once a schema is curated), the module file
(preprocessing_fn and run_fn: the same features, model, steps and calibration), the 8:1:1 hash
split, the slices and the in-process DirectRunner.
"""

import logging
import os
import sys

import tensorflow_model_analysis as tfma
from tfx import v1 as tfx

from bench.evaluator_cost import tfma_own_metrics, without
from pipeline.config import PipelineConfig, load_config
from pipeline.eval_config import make_eval_config
from pipeline.graph import EVAL_SPLIT
from pipeline.local_pipeline import dag_runs
from trainer.config import ModelConfig

PIPELINE_NAME = 'stock-tfx'


def stock_eval_config(config: PipelineConfig) -> tfma.EvalConfig:
    """The project's metrics, slices and AUC thresholds, computed by TFMA's own metrics."""
    eval_config = make_eval_config(config.evaluation, config.feature_spec)
    tfma_own_metrics(eval_config)
    without('CalibrationBound')(eval_config)
    return eval_config


def create_stock_pipeline(config: PipelineConfig, metadata_connection_config) -> tfx.dsl.Pipeline:
    """CsvExampleGen -> StatisticsGen -> ImportSchemaGen -> ExampleValidator -> Transform ->
    Trainer -> (latest blessed model) -> Evaluator -> Pusher, TFX's components throughout."""
    example_gen = tfx.components.CsvExampleGen(
        input_base=config.data_root,
        output_config=tfx.proto.Output(split_config=tfx.proto.SplitConfig(splits=[
            tfx.proto.SplitConfig.Split(name='train', hash_buckets=config.train_hash_buckets),
            tfx.proto.SplitConfig.Split(name='validation',
                                        hash_buckets=config.validation_hash_buckets),
            tfx.proto.SplitConfig.Split(name=EVAL_SPLIT,
                                        hash_buckets=config.eval_hash_buckets)])))
    statistics_gen = tfx.components.StatisticsGen(examples=example_gen.outputs['examples'])
    schema_gen = tfx.components.ImportSchemaGen(schema_file=config.schema_path)
    example_validator = tfx.components.ExampleValidator(
        statistics=statistics_gen.outputs['statistics'], schema=schema_gen.outputs['schema'])
    transform = tfx.components.Transform(
        examples=example_gen.outputs['examples'], schema=schema_gen.outputs['schema'],
        module_file=config.module_file, custom_config=config.transform_custom_config)
    trainer = tfx.components.Trainer(
        module_file=config.module_file,
        examples=transform.outputs['transformed_examples'],
        transform_graph=transform.outputs['transform_graph'],
        schema=schema_gen.outputs['schema'],
        train_args=tfx.proto.TrainArgs(splits=['train']),
        eval_args=tfx.proto.EvalArgs(splits=['validation']),
        custom_config=config.trainer_custom_config)
    model_resolver = tfx.dsl.Resolver(
        strategy_class=tfx.dsl.experimental.LatestBlessedModelStrategy,
        model=tfx.dsl.Channel(type=tfx.types.standard_artifacts.Model),
        model_blessing=tfx.dsl.Channel(type=tfx.types.standard_artifacts.ModelBlessing),
    ).with_id('latest_blessed_model_resolver')
    evaluator = tfx.components.Evaluator(
        examples=example_gen.outputs['examples'], example_splits=[EVAL_SPLIT],
        model=trainer.outputs['model'], baseline_model=model_resolver.outputs['model'],
        eval_config=stock_eval_config(config))
    pusher = tfx.components.Pusher(
        model=trainer.outputs['model'], model_blessing=evaluator.outputs['blessing'],
        push_destination=tfx.proto.PushDestination(
            filesystem=tfx.proto.PushDestination.Filesystem(
                base_directory=config.serving_model_dir)))
    return tfx.dsl.Pipeline(
        pipeline_name=config.pipeline_name, pipeline_root=config.pipeline_root,
        components=[example_gen, statistics_gen, schema_gen, example_validator, transform,
                    trainer, model_resolver, evaluator, pusher],
        enable_cache=False, metadata_connection_config=metadata_connection_config,
        beam_pipeline_args=list(config.beam_pipeline_args))


def stock_config(env=None) -> PipelineConfig:
    """The FUNNEL_* configuration under the pipeline name PIPELINE_NAME; the module's run_fn is
    told that the Trainer reads transformed examples (model.materialize_transform), as stock
    TFX's Transform writes them."""
    return load_config(env, pipeline_name=PIPELINE_NAME,
                       model=ModelConfig(materialize_transform=True))


def main() -> int:
    logging.basicConfig(level=logging.INFO)
    config = stock_config()
    metadata = tfx.orchestration.metadata.sqlite_metadata_connection_config(config.metadata_path)
    os.makedirs(config.pipeline_root, exist_ok=True)
    with dag_runs(config):  # as the project's runs: TFX's temporary files removed at the end
        tfx.orchestration.LocalDagRunner().run(create_stock_pipeline(config, metadata))
    return 0


if __name__ == '__main__':
    sys.exit(main())
