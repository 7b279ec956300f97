"""The compiled KFP package, run on this machine as the open-source backend runs it
(tests/kfp_launcher.py: each task once its upstream tasks are done, independent tasks two at a
time): every task's command and arguments exactly as the spec holds them,
through TFX's own container entrypoint, the ExecutorInput built as KFP's driver and launcher
build it, artifacts passed between tasks. The bucket is a local folder and Beam the
DirectRunner (compiled in, as a user would compile Flink or Dataflow arguments).

Two daily runs of the same package on tiny data: the first (days 1-2 on disk) ingests day 2,
has no model in production and pushes; the second (day 3 added) ingests day 3 and its
Evaluator compares the candidate with the model the first run pushed, which also warm-starts
its Trainer. The Tuner is on: its best trial's settings reach the Trainer.
"""

import json
import os

import pytest
import yaml
from conftest import REPO
from kfp_launcher import run_spec

from kubeflow import runner
from pipeline import run_outputs
from pipeline.config import load_config
from simulator.funnel import write_dataset

pytestmark = pytest.mark.slow

ROWS_PER_DAY = 2_000
SETTINGS = {
    'FUNNEL_KUBEFLOW_IMAGE': 'registry.example.com/funnel-mmoe:test',
    'FUNNEL_KUBEFLOW_BEAM_PIPELINE_ARGS': '--direct_running_mode=in_memory,--direct_num_workers=1',
    'FUNNEL_KUBEFLOW_TRAINER_GPUS': '0',
    'FUNNEL_SPAN_FOLDER': 'day-{SPAN}',
    'FUNNEL_MODEL_WARM_START': 'true',
    'FUNNEL_MODEL_TRAIN_STEPS': '20', 'FUNNEL_MODEL_STEPS_PER_VALIDATION': '10',
    'FUNNEL_MODEL_EVAL_STEPS': '2', 'FUNNEL_MODEL_BATCH_SIZE': '128',
    # Tiny data: judge the mechanics (a push, a comparison), not the model.
    'FUNNEL_EVALUATION_MIN_CLICK_AUC': '0.0', 'FUNNEL_EVALUATION_MIN_CONVERSION_AUC': '0.0',
    'FUNNEL_EVALUATION_MIN_CVR_AUC': '0.0', 'FUNNEL_EVALUATION_MAX_AUC_REGRESSION': '1.0',
    # About one conversion per split and day: too few to fit or judge a calibration
    # (tests/test_pipeline_e2e.py does, on more rows).
    'FUNNEL_MODEL_CALIBRATION': 'false', 'FUNNEL_EVALUATION_GATE_CALIBRATION': 'false',
    # and, in a split, no conversion at all at times: no minimum of rows per label class.
    'FUNNEL_EVALUATION_MIN_CLASS_ROWS': '0', 'FUNNEL_EVALUATION_MIN_EVAL_POSITIVES': '0',
    # The optional Tuner, on (trainer/tuning.py): two trials of a few steps.
    'FUNNEL_TUNER_ENABLED': 'true', 'FUNNEL_TUNER_MAX_TRIALS': '2',
    'FUNNEL_TUNER_SAMPLE_ROWS': '1000', 'FUNNEL_TUNER_TRIAL_EPOCHS': '1',
}


def _write_day(data_root, day):
    write_dataset(data_root / 'tmp', rows=ROWS_PER_DAY, seed=day)
    (data_root / 'tmp' / 'examples').rename(data_root / f'day-{day}')


@pytest.fixture(scope='module')
def runs(tmp_path_factory):
    """Compiles the package, then two runs; (config, spec, [outputs of run 1, of run 2], the
    folder of the task logs of each run)."""
    root = tmp_path_factory.mktemp('kfp')
    data_root = root / 'data'
    for day in (1, 2):
        _write_day(data_root, day)
    config = load_config(env={**SETTINGS, 'FUNNEL_KUBEFLOW_OUTPUT_ROOT': str(root / 'bucket'),
                              'FUNNEL_KUBEFLOW_DATA_ROOT': str(data_root)})
    package = root / 'build' / 'funnel-mmoe.yaml'
    runner.compile_pipeline(config, str(package))
    spec = yaml.safe_load(package.read_text())
    env = {k: v for k, v in os.environ.items() if not k.startswith('FUNNEL_')}
    env.update(PYTHONPATH=str(REPO), TF_USE_LEGACY_KERAS='1')  # as the image sets them
    first = run_spec(spec, spec['defaultPipelineRoot'], str(root / 'logs-1'), env=env)
    _write_day(data_root, 3)
    second = run_spec(spec, spec['defaultPipelineRoot'], str(root / 'logs-2'), env=env)
    return config, spec, [first, second], [root / 'logs-1', root / 'logs-2']


def _artifact(outputs, task, key):
    [artifact] = outputs[task][key]
    return artifact


def _example_gen(spec):
    return next(name for name in spec['root']['dag']['tasks'] if 'ExampleGen' in name)


def test_each_run_ingests_its_latest_span(runs):
    """No driver ran (KFP ignores `lifecycle`): ExampleGen's executor resolved day-{SPAN}."""
    _, spec, outputs, _ = runs
    for run, span in zip(outputs, (2, 3)):
        examples = _artifact(run, _example_gen(spec), 'examples')
        # TFX's entrypoint writes the custom property `span` (the type also has a property of
        # that name) under its `custom:` prefix.
        assert examples['metadata']['custom:span'] == span
        assert set(json.loads(examples['metadata']['split_names'])) >= {'train', 'eval'}


def test_first_run_has_no_model_in_production_and_pushes(runs):
    config, _, [first, _], _ = runs
    production = _artifact(first, 'ProductionModel', 'model')
    assert production['metadata']['production_version'] == ''
    assert not os.path.exists(os.path.join(production['uri'], 'Format-Serving'))
    pushed = _artifact(first, 'Pusher', 'pushed_model')
    assert pushed['metadata']['pushed'] == 1
    version = pushed['metadata']['pushed_version']
    assert os.path.isfile(os.path.join(config.kubeflow.output_root, 'serving_model',
                                       config.pipeline_name, version, 'saved_model.pb'))


def test_second_run_compares_with_the_model_in_production(runs):
    """The baseline is the version the first run pushed, copied by ProductionModel; TFMA
    computed the candidate's AUC change against it."""
    config, _, [first, second], _ = runs
    version = _artifact(first, 'Pusher', 'pushed_model')['metadata']['pushed_version']
    production = _artifact(second, 'ProductionModel', 'model')
    assert production['metadata']['production_version'] == version
    evaluation = _artifact(second, 'Evaluator', 'evaluation')['uri']
    baseline = run_outputs.model_locations(evaluation)[run_outputs.BASELINE]
    assert baseline == os.path.join(production['uri'], 'Format-Serving')
    served = os.path.join(config.kubeflow.output_root, 'serving_model', config.pipeline_name,
                          version, 'saved_model.pb')
    with open(served, 'rb') as a, open(os.path.join(baseline, 'saved_model.pb'), 'rb') as b:
        assert a.read() == b.read()
    table = run_outputs.load_metric_table(evaluation)
    assert 'auc' in table[('p_click', 'Overall')][run_outputs.DIFF]


def test_second_run_warm_starts_from_the_model_in_production(runs):
    """The Trainer's log names the production model it copied its weights from; the first
    run's Trainer had none (its ProductionModel artifact held no SavedModel)."""
    _, _, [_, second], [first_logs, second_logs] = runs
    production = _artifact(second, 'ProductionModel', 'model')
    assert (os.path.join(production['uri'], 'Format-Serving')
            in (second_logs / 'Trainer.log').read_text())
    assert 'no blessed model yet' in (first_logs / 'Trainer.log').read_text()


def test_the_tuners_best_hyperparameters_reach_the_trainer(runs):
    """TFX's entrypoint ran the Tuner (a container executor like the others); the Trainer of
    the same run logs its settings with the best trial's values."""
    _, _, outputs, logs = runs
    for run, log_dir in zip(outputs, logs):
        best_path = os.path.join(_artifact(run, 'Tuner', 'best_hyperparameters')['uri'],
                                 'best_hyperparameters.txt')
        with open(best_path) as f:
            best = json.load(f)['values']
        trainer_log = (log_dir / 'Trainer.log').read_text()
        assert "with the Tuner's best hyperparameters" in trainer_log
        for name in ('num_experts', 'batch_size', 'max_embedding_dim', 'learning_rate'):
            assert f'{name}={best[name]!r}' in trainer_log, name
