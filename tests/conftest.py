"""Shared fixtures: a tiny model config, random model inputs and one real tf.Transform run.

TFX 1.16 needs Keras 2 (tf_keras): TF_USE_LEGACY_KERAS must be set before anything imports
TensorFlow, so it is set here, first, and TensorFlow is imported lazily inside the fixtures.
"""

import os

os.environ.setdefault('TF_USE_LEGACY_KERAS', '1')
os.environ.setdefault('TF_CPP_MIN_LOG_LEVEL', '2')

import base64  # noqa: E402
import functools  # noqa: E402
import io  # noqa: E402
import json  # noqa: E402
import math  # noqa: E402
import re  # noqa: E402
import sys  # noqa: E402
import types  # noqa: E402
from pathlib import Path  # noqa: E402
from unittest import mock  # noqa: E402

import numpy as np  # noqa: E402
import pytest  # noqa: E402

from trainer.config import ModelConfig  # noqa: E402
from trainer.features import load_feature_spec  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
SCHEMA_PATH = REPO / 'schema' / 'schema.pbtxt'
# The simulator's feature spec, the pipeline's default, and its raw label columns.
SPEC = load_feature_spec(str(REPO / 'simulator' / 'feature_spec.yaml'))
RAW_LABELS = tuple(SPEC.raw_labels.values())

# The Transform's vocabulary settings in the tiny run: ids seen fewer than 3 times are OOV.
VOCABULARY = {'frequency_threshold': 3, 'num_oov_buckets': 4}

# user_id of the 50 training rows: two frequent ids (the whole vocabulary) and one rare id.
TRAIN_USER_COUNTS = {'u_hot': 28, 'u_warm': 20, 'u_rare': 2}
# user_id of the rows transformed afterwards with the fitted transform_fn.
PROBE_USERS = ('u_hot', 'u_rare', 'u_never_seen', 'u_warm')

# Fake vocabulary sizes and float inputs for model-only tests (no Transform needed).
TINY_VOCAB_SIZES = {'user_id': 20, 'item_id': 30, 'item_category': 7, 'device': 5,
                    'ad_position': 10}
TINY_DENSE_FEATURES = ('item_hist_ctr', 'item_hist_ctr_missing', 'price', 'user_activity',
                       'user_age')


def run_pipeline(config, **kwargs):
    """Runs the whole pipeline in this process, as `python -m pipeline.local_runner` does;
    returns its run id.

    TFX's Beam components parse sys.argv with absl flags; pytest's own arguments must not reach
    them (`pytest -v` would be read as absl's --verbosity), so they see a bare command line.
    """
    from pipeline import local_pipeline

    with mock.patch.object(sys, 'argv', sys.argv[:1]):
        return local_pipeline.run(config, **kwargs)


@pytest.fixture
def tiny_config() -> ModelConfig:
    """A small, valid MMoE + ESMM ModelConfig with unequal loss weights (so weighting bugs
    show) and no embedding L2 (so the compiled loss is the funnel loss alone)."""
    return ModelConfig(architecture='mmoe', loss='esmm', task_weighting='static',
                       num_experts=3, expert_units=(8, 4), tower_units=(4,),
                       max_embedding_dim=4, dense_projection_dim=4, embedding_l2=0.0,
                       batch_size=16, click_loss_weight=1.0, conversion_loss_weight=2.0, seed=0)


@pytest.fixture
def random_inputs():
    """Factory: a dict of [batch] model inputs (ids within the vocabularies, floats ~ N(0, 1))."""
    def make(batch: int = 16, seed: int = 0, vocab_sizes=None, dense_features=None):
        vocab_sizes = TINY_VOCAB_SIZES if vocab_sizes is None else vocab_sizes
        dense_features = TINY_DENSE_FEATURES if dense_features is None else dense_features
        rng = np.random.default_rng(seed)
        inputs = {name: rng.integers(0, size, batch).astype(np.int64)
                  for name, size in vocab_sizes.items()}
        inputs.update({name: rng.normal(size=batch).astype(np.float32)
                       for name in dense_features})
        return inputs
    return make


@pytest.fixture
def tiny_model(tiny_config):
    """An untrained model on the fake vocabularies, with fixed initial weights."""
    import tensorflow as tf

    from trainer.model import build_model

    tf.keras.utils.set_random_seed(0)
    return build_model(tiny_config, TINY_VOCAB_SIZES, TINY_DENSE_FEATURES)


# --- One real tf.Transform run ------------------------------------------------------------------

@pytest.fixture(scope='session')
def raw_schema():
    """schema/schema.pbtxt as a tensorflow_metadata Schema proto."""
    from google.protobuf import text_format
    from tensorflow_metadata.proto.v0 import schema_pb2

    return text_format.Parse(SCHEMA_PATH.read_text(), schema_pb2.Schema())


@pytest.fixture(scope='session')
def raw_feature_spec(raw_schema):
    """The raw feature spec the Transform sees (item_hist_ctr is a VarLenFeature)."""
    from tensorflow_transform.tf_metadata import schema_utils

    return schema_utils.schema_as_feature_spec(raw_schema).feature_spec


def to_instances(df, feature_spec):
    """DataFrame rows -> tf.Transform instance dicts.

    FixedLenFeatures of shape [1] get a one-element list; a VarLenFeature gets [] for a missing
    (NaN) value, which is how CsvExampleGen encodes an empty CSV cell.
    """
    import tensorflow as tf

    instances = []
    for row in df.to_dict('records'):
        instance = {}
        for name, feature in feature_spec.items():
            value = row[name]
            if isinstance(feature, tf.io.VarLenFeature):
                instance[name] = [] if isinstance(value, float) and math.isnan(value) else [value]
            else:
                instance[name] = [value]
        instances.append(instance)
    return instances


def _jsonable(instance):
    return json.dumps({name: np.asarray(value).tolist() for name, value in instance.items()})


def _read_rows(prefix: Path):
    with open(prefix) as f:
        return [json.loads(line) for line in f]


def _train_frame():
    """50 simulated impressions with controlled user ids and a unique user_age per row.

    The unique user_age is the row key: its z-score is monotonic, so Beam's output order does
    not matter (rows are matched by sorting on user_age).
    """
    from simulator.funnel import simulate

    df, _ = simulate(50, seed=1)
    df['user_id'] = [user for user, n in TRAIN_USER_COUNTS.items() for _ in range(n)]
    df['user_age'] = 20.0 + 0.5 * np.arange(len(df))
    assert 0 < df['item_hist_ctr'].isna().sum() < len(df)
    return df.sort_values('user_age').reset_index(drop=True)


def _probe_frame():
    """A few later impressions: known, rare and never-seen users; one missing item_hist_ctr."""
    from simulator.funnel import simulate

    df, _ = simulate(len(PROBE_USERS), seed=2)
    df['user_id'] = list(PROBE_USERS)
    df['user_age'] = 30.25 + np.arange(len(df))
    df.loc[0, 'item_hist_ctr'] = np.nan
    df.loc[1, 'item_hist_ctr'] = 0.05
    return df.sort_values('user_age').reset_index(drop=True)


def _sorted_by_age(rows):
    return sorted(rows, key=lambda row: row['user_age'])


@pytest.fixture(scope='session')
def transform_run(tmp_path_factory, raw_schema, raw_feature_spec):
    """The real preprocessing_fn run once with tft_beam over 50 simulated rows.

    AnalyzeAndTransformDataset on the training rows, TransformDataset on the probe rows with the
    fitted transform_fn, WriteTransformFn (plus the raw schema) to disk, laid out like TFX's
    transform_graph artifact. Returns a namespace with the raw frames, the
    transformed rows (aligned with the frames), the transform_fn dir and a TFTransformOutput.
    """
    import apache_beam as beam
    import tensorflow_transform as tft
    import tensorflow_transform.beam as tft_beam
    from tensorflow_transform.tf_metadata import dataset_metadata, metadata_io

    from trainer.preprocessing import preprocessing_fn

    root = tmp_path_factory.mktemp('transform')
    train_df, probe_df = _train_frame(), _probe_frame()
    metadata = dataset_metadata.DatasetMetadata(raw_schema)
    transform_fn_dir = root / 'transform_fn'
    fn = functools.partial(preprocessing_fn, custom_config={'vocabulary': VOCABULARY,
                                                            'features': SPEC.to_dict()})

    with tft_beam.Context(temp_dir=str(root / 'tmp')):
        with beam.Pipeline() as pipeline:
            train = pipeline | 'Train' >> beam.Create(to_instances(train_df, raw_feature_spec))
            probe = pipeline | 'Probe' >> beam.Create(to_instances(probe_df, raw_feature_spec))
            (transformed, _), transform_fn = (
                (train, metadata) | tft_beam.AnalyzeAndTransformDataset(fn))
            transformed_probe, _ = (((probe, metadata), transform_fn)
                                    | tft_beam.TransformDataset())
            _ = transform_fn | tft_beam.WriteTransformFn(str(transform_fn_dir))
            for label, rows in (('train', transformed), ('probe', transformed_probe)):
                _ = (rows | f'Json{label}' >> beam.Map(_jsonable)
                     | f'Write{label}' >> beam.io.WriteToText(str(root / label),
                                                              shard_name_template=''))

    # WriteTransformFn writes transform_fn/ and transformed_metadata/; TFX's Transform also
    # writes the raw schema to metadata/, which raw_feature_spec() (the serving spec) reads.
    metadata_io.write_metadata(
        metadata, str(transform_fn_dir / tft.TFTransformOutput.RAW_METADATA_DIR))
    train_rows, probe_rows = (_sorted_by_age(_read_rows(root / name))
                              for name in ('train', 'probe'))
    assert len(train_rows) == len(train_df) and len(probe_rows) == len(probe_df)
    return types.SimpleNamespace(
        train_df=train_df, probe_df=probe_df, train_rows=train_rows, probe_rows=probe_rows,
        transform_fn_dir=str(transform_fn_dir),
        tft_output=tft.TFTransformOutput(str(transform_fn_dir)))


EXPORTED_MODEL_CONFIG = ModelConfig(num_experts=2, expert_units=(8,), tower_units=(4,),
                                    max_embedding_dim=4, dense_projection_dim=4)


@pytest.fixture(scope='session')
def exported_model_dir(transform_run, tmp_path_factory) -> str:
    """An untrained small model on the tiny Transform's vocabularies, exported for serving
    (both signatures and the warmup requests) by trainer/export.py."""
    import tensorflow as tf

    from trainer.export import export_serving_model
    from trainer.model import build_model
    from trainer.train import model_inputs

    tf.keras.utils.set_random_seed(0)
    model = build_model(EXPORTED_MODEL_CONFIG, *model_inputs(transform_run.tft_output, SPEC))
    export_dir = str(tmp_path_factory.mktemp('serving') / 'serving_model')
    export_serving_model(model, transform_run.tft_output, export_dir, SPEC)
    return export_dir


# --- The HTML report ----------------------------------------------------------------------------

def assert_report_shows(html: str, metric_table, calibrated: bool = False) -> None:
    """The report has a metrics table per model output with a row per slice of the evaluation,
    in order, one AUC chart and one reliability diagram per task, all valid PNGs; for a
    `calibrated` model also the before / after diagrams of p_click and p_conversion."""
    from PIL import Image

    from pipeline.summary import judged_tasks
    from report.build import ordered_slices
    from trainer.features import OUTPUTS

    for output in OUTPUTS:
        assert f'<h3 id="{output}">' in html
    assert (re.findall(r'<td class="slice">([^<]+)</td>', html)
            == ordered_slices(metric_table) * len(OUTPUTS))
    images = re.findall(r'src="data:image/png;base64,([A-Za-z0-9+/=]+)"', html)
    assert len(images) == 1 + len(judged_tasks(SPEC.click_label)) + 2 * calibrated
    assert calibrated == ('before and after calibration' in html)
    for data in images:
        image = Image.open(io.BytesIO(base64.b64decode(data)))
        image.verify()
        assert image.format == 'PNG' and min(image.size) > 200


def write_transformed_examples(rows, tft_output, path):
    """Transformed rows as gzipped tf.Examples, as TFX's Transform writes them."""
    import tensorflow as tf

    spec = tft_output.transformed_feature_spec()
    with tf.io.TFRecordWriter(str(path), 'GZIP') as writer:
        for row in rows:
            feature = {name: tf.train.Feature(int64_list=tf.train.Int64List(value=[row[name]]))
                       if spec[name].dtype == tf.int64 else
                       tf.train.Feature(float_list=tf.train.FloatList(value=[row[name]]))
                       for name in spec}
            writer.write(tf.train.Example(
                features=tf.train.Features(feature=feature)).SerializeToString())


# --- Reliability figures (make reliability) -----------------------------------------------------

RELIABILITY_OUTCOMES = {'stopped': 'bad data stopped', 'handled': 'bad data handled by design',
                        'rejected': 'models rejected', 'resumed': 'runs resumed',
                        'reproduced': 'same-seed runs reproduced',
                        'served': 'serving requests answered',
                        'refused': 'serving requests refused'}
# The rows recorded by this run's tests (from every xdist worker's reports).
RELIABILITY_ROWS = []


@pytest.fixture
def reliability(request):
    """record(case, outcome, detail): called by a reliability test once its assertions passed,
    so the figures printed at the end of the run count only what was shown to hold. The row
    goes into the test's report, which reaches the end of the run from any xdist worker."""
    def record(case: str, outcome: str, detail: str = ''):
        assert outcome in RELIABILITY_OUTCOMES, outcome
        request.node.user_properties.append(('reliability', (case, outcome, detail)))
    return record


@pytest.hookimpl(trylast=True)
def pytest_collection_modifyitems(config, items):
    """The modules that hold a `slow` test run first, so that under `make test` (two xdist
    workers, one module each at a time) the longest ones do not start last."""
    slow_modules = {item.path for item in items if item.get_closest_marker('slow')}
    items.sort(key=lambda item: item.path not in slow_modules)


def pytest_runtest_logreport(report):
    if report.when == 'call':
        RELIABILITY_ROWS.extend(tuple(row) for name, row in report.user_properties
                                if name == 'reliability')


def pytest_terminal_summary(terminalreporter, config):
    """The reliability figures of this run: one line per case, then the counts."""
    rows = RELIABILITY_ROWS
    if not rows:
        return
    terminalreporter.section('reliability')
    width = max(len(case) for case, _, _ in rows)
    for case, outcome, detail in rows:
        terminalreporter.write_line(f'{case:<{width}}  {outcome:<10}  {detail[:110]}')
    counts = {outcome: sum(1 for _, o, _ in rows if o == outcome) for outcome in
              RELIABILITY_OUTCOMES}
    data = counts['stopped'] + counts['handled']
    terminalreporter.write_line(
        f'bad-data cases tried: {data}, stopped: {counts["stopped"]}, handled: '
        f'{counts["handled"]}; models rejected: {counts["rejected"]}; runs resumed: '
        f'{counts["resumed"]}; same-seed runs reproduced: {counts["reproduced"]}; serving '
        f'requests answered: {counts["served"]}, refused: {counts["refused"]}')
