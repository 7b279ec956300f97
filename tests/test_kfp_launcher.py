"""tests/kfp_launcher.py's scheduling, on a hand-written spec of short Python tasks: a task
starts only after its upstream tasks ended, independent tasks run at the same time, a failed
task or a cycle stops the run with its cause."""

import sys

import pytest
from kfp_launcher import run_spec

# Each task writes '<start> <end>' of its run (a short sleep) to its output artifact's file.
TASK = ('import sys, time; start = time.time(); time.sleep(0.5); '
        'open(sys.argv[1], "w").write(f"{start} {time.time()}")')
FAILING_TASK = 'import sys; sys.exit("boom in " + sys.argv[1])'


def _spec(upstream: dict, failing: str = None) -> dict:
    """A PipelineSpec whose task `name` waits for upstream[name] (via dependentTasks)."""
    def executor(name):
        code = FAILING_TASK if name == failing else TASK
        return {'container': {'image': 'unused', 'command': [sys.executable, '-c', code],
                              'args': ["{{$.outputs.artifacts['times'].uri}}"]}}

    return {
        'root': {'dag': {'tasks': {
            name: {'componentRef': {'name': f'comp-{name}'}, 'dependentTasks': sorted(after)}
            for name, after in upstream.items()}}},
        'components': {f'comp-{name}': {
            'executorLabel': f'exec-{name}',
            'outputDefinitions': {'artifacts': {'times': {
                'artifactType': {'schemaTitle': 'system.Artifact'}}}}} for name in upstream},
        'deploymentSpec': {'executors': {f'exec-{name}': executor(name) for name in upstream}},
    }


def _times(outputs, name):
    with open(outputs[name]['times'][0]['uri']) as f:
        return tuple(map(float, f.read().split()))


def test_upstream_first_and_independent_tasks_together(tmp_path):
    upstream = {'a': set(), 'b': set(), 'c': {'a', 'b'}}
    outputs = run_spec(_spec(upstream), str(tmp_path / 'root'), str(tmp_path / 'logs'))
    (a_start, a_end), (b_start, b_end), (c_start, _) = (_times(outputs, n) for n in 'abc')
    assert c_start >= max(a_end, b_end)
    assert a_start < b_end and b_start < a_end  # a and b overlapped


def test_one_worker_runs_tasks_one_by_one(tmp_path):
    upstream = {'a': set(), 'b': set()}
    outputs = run_spec(_spec(upstream), str(tmp_path / 'root'), str(tmp_path / 'logs'),
                       workers=1)
    (a_start, a_end), (b_start, b_end) = (_times(outputs, n) for n in 'ab')
    assert a_end <= b_start or b_end <= a_start


def test_failed_task_stops_the_run_with_its_log(tmp_path):
    upstream = {'a': set(), 'b': {'a'}}
    with pytest.raises(RuntimeError, match=r'task a failed \(1\):\n.*boom in .*times'):
        run_spec(_spec(upstream, failing='a'), str(tmp_path / 'root'), str(tmp_path / 'logs'))
    assert not (tmp_path / 'logs' / 'b.log').exists()


def test_cycle_is_an_error(tmp_path):
    upstream = {'a': set(), 'b': {'c'}, 'c': {'b'}}
    with pytest.raises(ValueError, match=r"cycle among \['b', 'c'\]"):
        run_spec(_spec(upstream), str(tmp_path / 'root'), str(tmp_path / 'logs'))
