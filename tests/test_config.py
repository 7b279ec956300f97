"""Tests of pipeline/config.py (FUNNEL_* overrides, validation) and pipeline/inputs.py."""

import dataclasses
import json
import os
import subprocess
import sys

import pytest

from pipeline.config import EvaluationConfig, KubeflowConfig, PipelineConfig, load_config
from pipeline.inputs import InputDataError, check_input_files, find_spans
from trainer.config import ConfigError, ModelConfig, VocabularyConfig, from_dict

LABELS = ('click', 'conversion')  # the simulator's raw (click, conversion) columns


def test_defaults_are_valid():
    """With no FUNNEL_* variables the defaults load and validate."""
    assert load_config(env={}) == PipelineConfig()


def test_environment_overrides_are_parsed_to_field_types():
    """Ints, comma-separated tuples, bools and nested sections are parsed from strings."""
    config = load_config(env={'FUNNEL_MODEL_TRAIN_STEPS': '7',
                              'FUNNEL_MODEL_EXPERT_UNITS': '8,4',
                              'FUNNEL_ENABLE_CACHE': 'false',
                              'FUNNEL_MODEL_GATE_TEMPERATURE': '0.5',
                              'FUNNEL_VOCABULARY_NUM_OOV_BUCKETS': '3',
                              'FUNNEL_SPAN_FOLDER': 'day-{SPAN}',
                              'FUNNEL_TRAIN_WINDOW_SPANS': '3',
                              'FUNNEL_MODEL_WARM_START': 'yes',
                              'FUNNEL_DATA_ROOT': '/data/logs',
                              'UNRELATED_VARIABLE': 'ignored'})
    assert config.model.train_steps == 7
    assert config.model.expert_units == (8, 4)
    assert config.enable_cache is False
    assert config.model.gate_temperature == 0.5
    assert config.vocabulary.num_oov_buckets == 3
    assert (config.span_folder, config.train_window_spans) == ('day-{SPAN}', 3)
    assert config.model.warm_start is True
    assert config.data_root == '/data/logs'
    assert config.model.tower_units == ModelConfig().tower_units  # untouched fields keep defaults


@pytest.mark.parametrize('text, value', [('true', True), ('1', True), ('YES', True),
                                         ('False', False), ('0', False), ('no', False)])
def test_bool_spellings(text, value):
    """The usual true/false spellings are accepted, case-insensitively."""
    assert load_config(env={'FUNNEL_ENABLE_CACHE': text}).enable_cache is value


def test_overrides_argument_is_validated_too():
    """Keyword overrides go through the same validation as environment values."""
    assert load_config(env={}, data_format='tfrecord').data_format == 'tfrecord'
    with pytest.raises(ConfigError, match='data_format') as error:
        load_config(env={}, data_format='avro')
    assert 'avro' in str(error.value)


@pytest.mark.parametrize('name', ['FUNNEL_MODEL_TRAIN_STEP', 'FUNNEL_TRAIN_STEPS',
                                  'FUNNEL_MODEL', 'FUNNEL_VOCABULARY_TOPK'])
def test_unknown_variable_is_an_error(name):
    """A misspelt FUNNEL_* variable is never silently ignored."""
    with pytest.raises(ConfigError, match=name):
        load_config(env={name: '1'})


@pytest.mark.parametrize('name, text', [
    ('FUNNEL_MODEL_TRAIN_STEPS', 'seven'),
    ('FUNNEL_MODEL_TRAIN_STEPS', '7.5'),
    ('FUNNEL_MODEL_EXPERT_UNITS', '8,x'),
    ('FUNNEL_MODEL_LEARNING_RATE', 'fast'),
    ('FUNNEL_ENABLE_CACHE', 'maybe'),
    ('FUNNEL_VOCABULARY_TOP_K', ''),
])
def test_malformed_value_is_an_error_naming_the_variable(name, text):
    """A value that does not parse as the field's type raises ConfigError naming the variable."""
    with pytest.raises(ConfigError, match=name):
        load_config(env={name: text})


def _int_fields(cls, section=''):
    """(section, field) of every int setting, top-level and in every section."""
    for field in dataclasses.fields(cls):
        if dataclasses.is_dataclass(field.type):
            yield from _int_fields(field.type, field.name)
        elif field.type is int:
            yield section, field.name


_INT_FIELDS = list(_int_fields(PipelineConfig))


@pytest.mark.parametrize('section, field', _INT_FIELDS)
def test_negative_int_is_an_error_naming_the_variable(section, field):
    """Every int setting rejects -1 at load time, with a message naming its FUNNEL_ variable."""
    name = 'FUNNEL_' + (f'{section}_{field}' if section else field).upper()
    with pytest.raises(ConfigError, match=name):
        load_config(env={name: '-1'})


@pytest.mark.parametrize('name, text', [
    ('FUNNEL_MODEL_EXPERT_UNITS', ''), ('FUNNEL_MODEL_EXPERT_UNITS', '8,0'),
    ('FUNNEL_MODEL_DROPOUT', '1.0'), ('FUNNEL_MODEL_GATE_TEMPERATURE', '0'),
    ('FUNNEL_MODEL_LEARNING_RATE', 'nan'), ('FUNNEL_EVALUATION_MIN_CLICK_AUC', '1.5'),
    ('FUNNEL_EVALUATION_MAX_AUC_REGRESSION', '-0.1'), ('FUNNEL_MODEL_ARCHITECTURE', 'mlp'),
    ('FUNNEL_MODEL_LOSS', 'ESMM'), ('FUNNEL_MODEL_EMBEDDING_L2', '-1e-4'),
    ('FUNNEL_DATA_FORMAT', 'avro'), ('FUNNEL_MODEL_TRAIN_EPOCHS', '0'),
])
def test_out_of_range_value_is_an_error_naming_the_variable(name, text):
    """Values that parse but make no sense are rejected, naming the variable to fix."""
    with pytest.raises(ConfigError, match=name):
        load_config(env={name: text})


@pytest.mark.parametrize('cls', [ModelConfig, VocabularyConfig, EvaluationConfig,
                                 KubeflowConfig])
def test_sections_survive_a_json_round_trip(cls):
    """A section passed as a component's custom_config (JSON) comes back equal, tuples included."""
    config = load_config(env={'FUNNEL_MODEL_EXPERT_UNITS': '8,4',
                              'FUNNEL_MODEL_TOWER_UNITS': '5',
                              'FUNNEL_MODEL_GATE_TEMPERATURE': '0.25',
                              'FUNNEL_MODEL_ARCHITECTURE': 'ple'})
    section = {ModelConfig: config.model, VocabularyConfig: config.vocabulary,
               EvaluationConfig: config.evaluation, KubeflowConfig: config.kubeflow}[cls]
    restored = from_dict(cls, json.loads(json.dumps(dataclasses.asdict(section))))
    assert restored == section
    assert hash(restored) == hash(section)


# --- pipeline.inputs.check_input_files -------------------------------------------------------

def test_missing_folder(tmp_path):
    """A folder that does not exist is named in the error."""
    missing = tmp_path / 'nope'
    with pytest.raises(InputDataError, match=str(missing)):
        check_input_files(str(missing), 'csv', LABELS)


def test_empty_folder(tmp_path):
    """A folder without files (subfolders do not count) is named in the error."""
    (tmp_path / 'subdir').mkdir()
    with pytest.raises(InputDataError, match=str(tmp_path)):
        check_input_files(str(tmp_path), 'csv', LABELS)


@pytest.mark.parametrize('data_format', ['csv', 'parquet', 'tfrecord'])
def test_empty_file(tmp_path, data_format):
    """A zero-byte input file is named in the error, whatever the format."""
    (tmp_path / 'a.csv').write_text('user_id,click\nu1,0\n')
    empty = tmp_path / 'b.data'
    empty.write_bytes(b'')
    with pytest.raises(InputDataError, match=str(empty)):
        check_input_files(str(tmp_path), data_format, LABELS)


@pytest.mark.parametrize('content', ['user_id,click\n', 'user_id,click', 'user_id,click\n\n'])
def test_header_only_csv(tmp_path, content):
    """A CSV holding only its header (would train on nothing) is named in the error."""
    path = tmp_path / 'impressions.csv'
    path.write_text(content)
    with pytest.raises(InputDataError, match=str(path)):
        check_input_files(str(tmp_path), 'csv', LABELS)


def test_good_csv_files_are_listed(tmp_path):
    """Valid inputs come back as the sorted list of files directly in the folder."""
    for name in ('b.csv', 'a.csv'):
        (tmp_path / name).write_text('user_id,click,conversion\nu1,1,0\nu2,1,1\nu3,0,0\n')
    (tmp_path / 'nested').mkdir()
    (tmp_path / 'nested' / 'c.csv').write_text('user_id,click\n')  # ignored: not read by ExampleGen
    assert check_input_files(str(tmp_path), 'csv', LABELS) == [str(tmp_path / 'a.csv'),
                                                       str(tmp_path / 'b.csv')]


# --- pipeline.inputs.find_spans and the span settings ----------------------------------------

def test_spans_are_found_by_number(tmp_path):
    for name in ('day-10', 'day-2', 'day-x', 'other'):
        (tmp_path / name).mkdir()
    assert find_spans(str(tmp_path), 'day-{SPAN}') == {2: str(tmp_path / 'day-2'),
                                                        10: str(tmp_path / 'day-10')}


def test_two_folders_of_one_span_are_an_error(tmp_path):
    for name in ('span-1', 'span-01'):
        (tmp_path / name).mkdir()
    with pytest.raises(InputDataError, match='both hold span 1'):
        find_spans(str(tmp_path), 'span-{SPAN}')


def test_no_span_folder_is_an_error(tmp_path):
    (tmp_path / 'data.csv').write_text('a\n1\n')
    with pytest.raises(InputDataError, match="No span folder named like 'span-{SPAN}'"):
        find_spans(str(tmp_path), 'span-{SPAN}')


@pytest.mark.parametrize('env, message', [
    ({'FUNNEL_SPAN_FOLDER': 'day'}, 'span_folder'),
    ({'FUNNEL_SPAN_FOLDER': 'logs/day-{SPAN}'}, 'span_folder'),
    ({'FUNNEL_TRAIN_WINDOW_SPANS': '3'}, 'needs span_folder'),
    ({'FUNNEL_FEATURE_SPEC_PATH': '/nope.yaml'}, 'cannot be read'),
])
def test_bad_span_and_spec_settings_are_errors(env, message):
    with pytest.raises(ValueError, match=message):
        load_config(env=env)


def test_conversion_without_click_in_tfrecords(tmp_path):
    """The funnel rule holds for TFRecord input too: the gzipped file and record are named."""
    import tensorflow as tf

    from simulator.funnel import simulate
    from trainer.warmup import serialize_example

    rows, _ = simulate(30, seed=4)
    rows.loc[[3, 17], ['click', 'conversion']] = [0, 1]
    data = tmp_path / 'data'
    data.mkdir()
    with tf.io.TFRecordWriter(str(data / 'part-0.gz'), 'GZIP') as writer:
        for row in rows.to_dict('records'):
            writer.write(serialize_example(row))
    with pytest.raises(InputDataError, match=r'part-0.gz: 2 row\(s\) with conversion = 1 '
                                             r'but click = 0 at record\(s\) 3, 17'):
        check_input_files(str(data), 'tfrecord', LABELS)


def test_a_file_that_is_not_tfrecords(tmp_path):
    (tmp_path / 'impressions.csv').write_text('user_id,click\nu1,0\n')
    with pytest.raises(InputDataError,
                       match='impressions.csv is not a TFRecord file of tf.Examples'):
        check_input_files(str(tmp_path), 'tfrecord', LABELS)


# --- pipeline.arguments: the Makefile's NAME / DATA / SPEC before the heavy imports -----------

@pytest.mark.parametrize('env, message', [
    ({'FUNNEL_PIPELINE_NAME': 'clean_curated'}, "pipeline_name='clean_curated' must be"),
    ({'FUNNEL_DATA_ROOT': '/no/such/logs'}, 'Input folder /no/such/logs does not exist'),
    ({'FUNNEL_FEATURE_SPEC_PATH': '/no/spec.yaml'}, 'Feature spec /no/spec.yaml cannot be read'),
])
def test_bad_arguments_fail_before_tensorflow_is_imported(tmp_path, env, message):
    env = {**{k: v for k, v in os.environ.items() if not k.startswith('FUNNEL_')},
           'FUNNEL_DATA_ROOT': str(tmp_path), **env}
    code = ('import sys; from pipeline import arguments; rc = arguments.main(); '
            'print("tensorflow" in sys.modules); sys.exit(rc)')
    result = subprocess.run([sys.executable, '-c', code], env=env, capture_output=True,
                            text=True, timeout=60)
    assert result.returncode == 2 and message in result.stderr
    assert result.stdout.strip() == 'False'
