"""create_pipeline: the TFX graph, shared by the local and the Kubeflow runners."""

import hashlib
import os
from typing import Optional

from ml_metadata.proto import metadata_store_pb2
from tfx import v1 as tfx

from components.anomalies_gate import AnomaliesGate
from components.atomic_pusher import AtomicPusher
from components.example_gen import checked_example_gen
from components.production_model import Evaluator, ProductionModel, Trainer, newest_complete_version
from components.serving_contract import ServingContractCheck
from pipeline import engines
from pipeline.config import PipelineConfig
from pipeline.eval_config import make_eval_config

GATE_ID = 'AnomaliesGate'  # where validate-only runs stop
EVAL_SPLIT = 'eval'  # the Evaluator's split, which nothing in training reads


def _example_gen(config: PipelineConfig, span: Optional[int] = None):
    """Reads the input folder (CSV or TFRecord of tf.Examples) after the input check
    (components/example_gen.py), split train:validation:eval by hash: the Trainer fits on train,
    early-stops and calibrates on validation; only the Evaluator reads eval.

    With daily data (config.span_folder) it reads one span: `span`, or else the latest one.
    """
    output_config = tfx.proto.Output(split_config=tfx.proto.SplitConfig(splits=[
        tfx.proto.SplitConfig.Split(name='train', hash_buckets=config.train_hash_buckets),
        tfx.proto.SplitConfig.Split(name='validation',
                                    hash_buckets=config.validation_hash_buckets),
        tfx.proto.SplitConfig.Split(name=EVAL_SPLIT, hash_buckets=config.eval_hash_buckets),
    ]))
    pattern = f'{config.span_folder}/*' if config.span_folder else '*'
    kwargs = dict(input_base=config.data_root, output_config=output_config,
                  input_config=tfx.proto.Input(splits=[
                      tfx.proto.Input.Split(name='single_split', pattern=pattern)]))
    if span is not None:
        kwargs['range_config'] = tfx.proto.RangeConfig(static_range=tfx.proto.StaticRange(
            start_span_number=span, end_span_number=span))
    return checked_example_gen(config.data_format, config.feature_spec, **kwargs)


def _span_window(config: PipelineConfig, example_gen) -> Optional[tfx.dsl.Resolver]:
    """With a training window of several spans, a resolver of the latest `train_window_spans`
    spans ingested so far (this run's included); None when training on this run's data only."""
    if config.train_window_spans == 1:
        return None
    window = tfx.dsl.Resolver(
        strategy_class=tfx.dsl.experimental.SpanRangeStrategy,
        config={'range_config': tfx.proto.RangeConfig(rolling_range=tfx.proto.RollingRange(
            num_spans=config.train_window_spans))},
        examples=tfx.dsl.Channel(type=tfx.types.standard_artifacts.Examples,
                                 producer_component_id=example_gen.id, output_key='examples'),
    ).with_id('span_window_resolver')
    window.add_upstream_node(example_gen)  # resolve after this run's span is ingested
    return window


def _schema_importer(config: PipelineConfig):
    """Imports the curated schema folder, keyed by a hash of the schema's content.

    ImportSchemaGen's cache key is the file path only, so an edited schema would silently be
    ignored by a cached rerun. The Importer registers a new Schema artifact whenever the
    content hash changes, which re-runs validation and everything downstream.
    """
    with tfx.dsl.io.fileio.open(config.schema_path, 'rb') as f:  # local or object store
        digest = hashlib.sha256(f.read()).hexdigest()
    return tfx.dsl.Importer(
        source_uri=os.path.dirname(config.schema_path),
        artifact_type=tfx.types.standard_artifacts.Schema,
        # No underscore: a task name is a term in Argo's `depends` expressions on Kubeflow,
        # which read `schema_importer` as `schema` (kubeflow/backendcheck refused it).
        custom_properties={'sha256': digest}).with_id('SchemaImporter')


def _ingest_and_validate(config: PipelineConfig, span: Optional[int] = None) -> list:
    """ExampleGen -> StatisticsGen -> ExampleValidator (against the imported schema) -> gate."""
    example_gen = _example_gen(config, span)
    statistics_gen = tfx.components.StatisticsGen(examples=example_gen.outputs['examples'])
    schema_importer = _schema_importer(config)
    example_validator = tfx.components.ExampleValidator(
        statistics=statistics_gen.outputs['statistics'],
        schema=schema_importer.outputs['result'])
    anomalies_gate = AnomaliesGate(
        anomalies=example_validator.outputs['anomalies'],
        statistics=statistics_gen.outputs['statistics'],
        schema=schema_importer.outputs['result'],
        baseline_dir=config.drift_baseline_dir,
        labels=','.join(config.feature_spec.label_columns), eval_split=EVAL_SPLIT,
        min_class_rows=config.evaluation.min_class_rows,
        min_eval_positives=config.evaluation.min_eval_positives).with_id(GATE_ID)
    return [example_gen, statistics_gen, schema_importer, example_validator, anomalies_gate]


def _pipeline(config: PipelineConfig, components: list,
              metadata_connection_config: Optional[metadata_store_pb2.ConnectionConfig]):
    return tfx.dsl.Pipeline(
        pipeline_name=config.pipeline_name,
        pipeline_root=config.pipeline_root,
        components=components,
        enable_cache=config.enable_cache,
        metadata_connection_config=metadata_connection_config,
        beam_pipeline_args=engines.pipeline_args(config.beam, config.beam_pipeline_args))


def create_ingest_pipeline(config: PipelineConfig, span: int,
                           metadata_connection_config: Optional[
                               metadata_store_pb2.ConnectionConfig] = None) -> tfx.dsl.Pipeline:
    """Ingests and validates one earlier span (daily data), so that the training window of the
    next full run finds it in ML Metadata. Same pipeline name and component ids as
    create_pipeline; a span ingested before is a cache hit."""
    return _pipeline(config, _ingest_and_validate(config, span), metadata_connection_config)


def create_pipeline(config: PipelineConfig,
                    metadata_connection_config: Optional[
                        metadata_store_pb2.ConnectionConfig] = None,
                    span: Optional[int] = None) -> tfx.dsl.Pipeline:
    """ExampleGen -> statistics, schema, validation -> Transform -> (Tuner) -> Trainer ->
    Evaluator -> Pusher.

    The Pusher also needs the serving contract check's blessing (components/serving_contract.py).
    With daily data, ExampleGen reads span `span` (None: the latest it finds), Transform and
    Trainer see the latest `train_window_spans` spans ingested and the Evaluator this run's.
    """
    spec = config.feature_spec
    ingest = _ingest_and_validate(config, span)
    example_gen, schema_importer, anomalies_gate = ingest[0], ingest[2], ingest[-1]
    span_window = _span_window(config, example_gen)
    raw_examples = (span_window or example_gen).outputs['examples']
    materialize = config.model.materialize_transform

    transform = tfx.components.Transform(
        examples=raw_examples,
        schema=schema_importer.outputs['result'],
        module_file=config.module_file,
        custom_config=config.transform_custom_config,
        # StatisticsGen already gives the statistics the pipeline validates; the Transform's own
        # pre- and post-transform statistics were two more full passes that nothing read
        # (bench/results/speed.md).
        disable_statistics=True,
        # Fitted on train; the Trainer reads train and validation. The Evaluator reads the raw
        # eval split through the serving signature, so transforming it was a pass nothing read.
        # Without materializing (model.materialize_transform) the Transform only analyses, and
        # the Trainer and Tuner transform the raw examples as they read them (trainer/train.py).
        materialize=materialize,
        splits_config=tfx.proto.SplitsConfig(
            analyze=['train'], transform=['train', 'validation'] if materialize else []))
    transform.add_upstream_node(anomalies_gate)
    examples = transform.outputs['transformed_examples'] if materialize else raw_examples

    # The model TF Serving serves (components/production_model.py), not a Resolver: the
    # open-source Kubeflow Pipelines backend runs only containers and importers. The version
    # seen now is the cache key of runners with an ML Metadata cache (the local one); Kubeflow
    # compiles without one, never caches the step, and must not need the bucket to compile.
    production_model = ProductionModel(
        serving_model_dir=config.serving_model_dir,
        production_version=(newest_complete_version(config.serving_model_dir) or ''
                            if metadata_connection_config else ''))

    # Optional (config.tuner.enabled): KerasTuner trials on the train split, scored on the
    # validation split (trainer/tuning.py); the best trial's settings feed the Trainer.
    tuner = tfx.components.Tuner(
        module_file=config.module_file,
        examples=examples,
        transform_graph=transform.outputs['transform_graph'],
        schema=schema_importer.outputs['result'],
        train_args=tfx.proto.TrainArgs(splits=['train']),
        eval_args=tfx.proto.EvalArgs(splits=['validation']),
        custom_config=config.tuner_custom_config) if config.tuner.enabled else None

    trainer = Trainer(
        module_file=config.module_file,
        examples=examples,
        transform_graph=transform.outputs['transform_graph'],
        schema=schema_importer.outputs['result'],
        # Only when warm starting: a new blessed model would otherwise void the Trainer's cache.
        base_model=production_model.outputs['model'] if config.model.warm_start else None,
        hyperparameters=tuner.outputs['best_hyperparameters'] if tuner else None,
        # The splits only: the steps are the model settings' (train_steps, eval_steps), which
        # reach the trainer once, in custom_config.
        train_args=tfx.proto.TrainArgs(splits=['train']),
        eval_args=tfx.proto.EvalArgs(splits=['validation']),
        custom_config=config.trainer_custom_config)

    serving_contract = ServingContractCheck(model=trainer.outputs['model'])

    evaluator = Evaluator(
        examples=example_gen.outputs['examples'],
        example_splits=[EVAL_SPLIT],
        model=trainer.outputs['model'],
        baseline_model=production_model.outputs['model'],
        eval_config=make_eval_config(config.evaluation, spec))

    pusher = AtomicPusher(
        model=trainer.outputs['model'],
        model_blessing=evaluator.outputs['blessing'],
        infra_blessing=serving_contract.outputs['infra_blessing'],
        push_destination=tfx.proto.PushDestination(
            filesystem=tfx.proto.PushDestination.Filesystem(
                base_directory=config.serving_model_dir))).with_id('Pusher')

    return _pipeline(
        config, ingest + ([span_window] if span_window else []) + [
            transform, production_model, *([tuner] if tuner else []), trainer,
            serving_contract, evaluator, pusher],
        metadata_connection_config)
