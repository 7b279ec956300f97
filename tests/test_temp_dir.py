"""A run's own temporary folder (pipeline/temp_dir.py); the e2e test checks it on real runs,
killed and not (test_pipeline_e2e.py::test_runs_leave_no_temporary_files_even_when_killed)."""

import os
import subprocess
import sys
import tempfile

import pytest

from pipeline.temp_dir import own_temp_dir


def test_the_block_and_its_children_write_into_the_folder_which_is_removed_after(tmp_path):
    folder = tmp_path / 'tmp' / 'funnel-mmoe'
    folder.mkdir(parents=True)
    (folder / 'left-by-a-killed-run').write_text('x')
    before = tempfile.gettempdir(), os.environ.get('TMPDIR')
    with own_temp_dir(str(folder)):
        assert os.listdir(folder) == []
        made = tempfile.mkdtemp()
        child = subprocess.run([sys.executable, '-c', 'import tempfile; print(tempfile.mkdtemp())'],
                               capture_output=True, text=True, check=True).stdout.strip()
        assert os.path.dirname(made) == os.path.dirname(child) == str(folder)
    assert not folder.exists()
    assert (tempfile.gettempdir(), os.environ.get('TMPDIR')) == before


def test_a_failing_block_still_removes_the_folder(tmp_path):
    folder = tmp_path / 'tmp'
    before = tempfile.gettempdir(), os.environ.get('TMPDIR')
    with pytest.raises(ValueError), own_temp_dir(str(folder)):
        tempfile.mkdtemp()
        raise ValueError('a component failed')
    assert not folder.exists()
    assert (tempfile.gettempdir(), os.environ.get('TMPDIR')) == before
