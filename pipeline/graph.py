"""create_pipeline: the TFX graph, shared by the local and the Kubeflow runners."""

import dataclasses
import hashlib
import os
from typing import Optional

from ml_metadata.proto import metadata_store_pb2
from tfx import v1 as tfx

from components.anomalies_gate import AnomaliesGate
from components.atomic_pusher import AtomicPusher
from components.serving_contract import ServingContractCheck
from pipeline.config import PipelineConfig
from pipeline.eval_config import make_eval_config

GATE_ID = 'AnomaliesGate'  # where validate-only runs stop


def _example_gen(config: PipelineConfig):
    """Reads the input folder (CSV or TFRecord of tf.Examples), split train:eval by hash."""
    output_config = tfx.proto.Output(split_config=tfx.proto.SplitConfig(splits=[
        tfx.proto.SplitConfig.Split(name='train', hash_buckets=config.train_hash_buckets),
        tfx.proto.SplitConfig.Split(name='eval', hash_buckets=config.eval_hash_buckets),
    ]))
    if config.data_format == 'csv':
        return tfx.components.CsvExampleGen(input_base=config.data_root,
                                            output_config=output_config)
    return tfx.components.ImportExampleGen(input_base=config.data_root,
                                           output_config=output_config)


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
        custom_properties={'sha256': digest}).with_id('schema_importer')


def create_pipeline(config: PipelineConfig,
                    metadata_connection_config: Optional[
                        metadata_store_pb2.ConnectionConfig] = None) -> tfx.dsl.Pipeline:
    """ExampleGen -> statistics, schema, validation -> Transform -> Trainer -> Evaluator -> Pusher.

    The Pusher also needs the serving contract check's blessing (components/serving_contract.py).
    """
    example_gen = _example_gen(config)
    statistics_gen = tfx.components.StatisticsGen(examples=example_gen.outputs['examples'])
    schema_importer = _schema_importer(config)
    example_validator = tfx.components.ExampleValidator(
        statistics=statistics_gen.outputs['statistics'],
        schema=schema_importer.outputs['result'])
    anomalies_gate = AnomaliesGate(
        anomalies=example_validator.outputs['anomalies'],
        statistics=statistics_gen.outputs['statistics'],
        schema=schema_importer.outputs['result'],
        baseline_dir=config.drift_baseline_dir).with_id(GATE_ID)

    transform = tfx.components.Transform(
        examples=example_gen.outputs['examples'],
        schema=schema_importer.outputs['result'],
        module_file=config.module_file,
        custom_config={'vocabulary': dataclasses.asdict(config.vocabulary)})
    transform.add_upstream_node(anomalies_gate)

    trainer = tfx.components.Trainer(
        module_file=config.module_file,
        examples=transform.outputs['transformed_examples'],
        transform_graph=transform.outputs['transform_graph'],
        schema=schema_importer.outputs['result'],
        train_args=tfx.proto.TrainArgs(num_steps=config.model.train_steps),
        eval_args=tfx.proto.EvalArgs(num_steps=config.model.eval_steps),
        custom_config={'model': dataclasses.asdict(config.model)})

    serving_contract = ServingContractCheck(model=trainer.outputs['model'])

    baseline_model = tfx.dsl.Resolver(
        strategy_class=tfx.dsl.experimental.LatestBlessedModelStrategy,
        model=tfx.dsl.Channel(type=tfx.types.standard_artifacts.Model),
        model_blessing=tfx.dsl.Channel(type=tfx.types.standard_artifacts.ModelBlessing),
    ).with_id('latest_blessed_model_resolver')

    evaluator = tfx.components.Evaluator(
        examples=example_gen.outputs['examples'],
        model=trainer.outputs['model'],
        baseline_model=baseline_model.outputs['model'],
        eval_config=make_eval_config(config.evaluation))

    pusher = AtomicPusher(
        model=trainer.outputs['model'],
        model_blessing=evaluator.outputs['blessing'],
        infra_blessing=serving_contract.outputs['infra_blessing'],
        push_destination=tfx.proto.PushDestination(
            filesystem=tfx.proto.PushDestination.Filesystem(
                base_directory=config.serving_model_dir))).with_id('Pusher')

    return tfx.dsl.Pipeline(
        pipeline_name=config.pipeline_name,
        pipeline_root=config.pipeline_root,
        components=[example_gen, statistics_gen, schema_importer, example_validator,
                    anomalies_gate, transform, trainer, serving_contract, baseline_model,
                    evaluator, pusher],
        enable_cache=config.enable_cache,
        metadata_connection_config=metadata_connection_config,
        beam_pipeline_args=list(config.beam_pipeline_args))
