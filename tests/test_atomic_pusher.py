"""The Pusher of the pipeline (components/atomic_pusher.py), run as TFX runs it: its executor on
real artifacts. A version lands whole or not at all, and a model that the serving contract
check refused (NaN, broken funnel order) is never pushed."""

import os

import pytest
from test_serving_contract import _blessing, _fake_model, _model_artifact, _outputs
from tfx.components.pusher import executor as stock_pusher
from tfx.proto import pusher_pb2
from tfx.types import standard_artifacts
from tfx.utils import io_utils, proto_utils

from components.atomic_pusher import STAGING, AtomicPushExecutor
from components.serving_contract import ServingContractCheck

pytestmark = pytest.mark.reliability


def _push(executor, tmp_path, model, base, infra_blessing=None):
    """Runs `executor` on `model` (blessed by the Evaluator) with `infra_blessing` (blessed by
    the contract check unless given); returns the PushedModel artifact."""
    model_blessing = standard_artifacts.ModelBlessing()
    model_blessing.set_int_custom_property('blessed', 1)
    if infra_blessing is None:
        infra_blessing = standard_artifacts.InfraBlessing()
        infra_blessing.set_int_custom_property('blessed', 1)
    pushed = standard_artifacts.PushedModel()
    pushed.uri = str(tmp_path / f'pushed-{len(os.listdir(tmp_path))}')
    destination = pusher_pb2.PushDestination(
        filesystem=pusher_pb2.PushDestination.Filesystem(base_directory=str(base)))
    executor.Do({'model': [model], 'model_blessing': [model_blessing],
                 'infra_blessing': [infra_blessing]}, {'pushed_model': [pushed]},
                {'push_destination': proto_utils.proto_to_json(destination)})
    return pushed


@pytest.fixture
def model(tmp_path, exported_model_dir):
    return _model_artifact(tmp_path / 'model', exported_model_dir)


def test_push_renames_a_complete_version_into_place(tmp_path, model):
    base = tmp_path / 'serving'
    pushed = _push(AtomicPushExecutor(), tmp_path, model, base)
    version = pushed.get_string_custom_property('pushed_version')
    assert os.listdir(base) == [version]  # no staging folder left
    assert pushed.get_string_custom_property('pushed_destination') == str(base / version)
    assert (base / version / 'saved_model.pb').is_file()
    assert (base / version / 'assets.extra' / 'tf_serving_warmup_requests').is_file()


def _crash_on_saved_model_pb(monkeypatch):
    """Every file but saved_model.pb copies; copying saved_model.pb fails (a full disk)."""
    def copy_file(src, dst, *args, **kwargs):
        raise OSError(f'No space left on device: {dst}')
    monkeypatch.setattr(io_utils, 'copy_file', copy_file)


def test_a_crash_mid_push_leaves_no_version(tmp_path, model, monkeypatch):
    """The stock Pusher leaves a numbered folder without saved_model.pb, which TF Serving would
    try to load as the latest version; ours leaves only the hidden staging folder, which the
    next push clears."""
    _crash_on_saved_model_pb(monkeypatch)
    with pytest.raises(OSError):
        _push(stock_pusher.Executor(), tmp_path, model, tmp_path / 'stock')
    [half_written] = os.listdir(tmp_path / 'stock')
    assert half_written.isdigit()
    assert not (tmp_path / 'stock' / half_written / 'saved_model.pb').exists()

    base = tmp_path / 'serving'
    with pytest.raises(OSError):
        _push(AtomicPushExecutor(), tmp_path, model, base)
    assert os.listdir(base) == [STAGING]

    monkeypatch.undo()
    version = _push(AtomicPushExecutor(), tmp_path, model, base).get_string_custom_property(
        'pushed_version')
    assert os.listdir(base) == [version]


def test_a_model_with_nan_outputs_is_not_pushed(tmp_path, model, exported_model_dir,
                                                reliability):
    """The contract check's InfraBlessing (blessed = 0) stops the Pusher, even though the
    Evaluator blessed the model; the version already served stays as it was. (A model breaking
    the funnel order gets blessed = 0 the same way: tests/test_serving_contract.py.)"""
    base = tmp_path / 'serving'
    served = _push(AtomicPushExecutor(), tmp_path, model, base).get_string_custom_property(
        'pushed_version')
    files = sorted(p.relative_to(base) for p in base.rglob('*'))

    broken = _model_artifact(tmp_path / 'broken', _fake_model(
        tmp_path / 'fake', _outputs(p_click=float('nan')), exported_model_dir))
    infra_blessing = _blessing(tmp_path / 'infra_blessing')
    ServingContractCheck.test_call(model=broken, infra_blessing=infra_blessing)
    assert infra_blessing.get_int_custom_property('blessed') == 0
    pushed = _push(AtomicPushExecutor(), tmp_path, broken, base, infra_blessing)
    assert pushed.get_int_custom_property('pushed') == 0
    assert os.listdir(base) == [served]
    assert sorted(p.relative_to(base) for p in base.rglob('*')) == files
    reliability('model with NaN outputs', 'rejected', 'serving contract check; Pusher skipped')
