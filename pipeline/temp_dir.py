"""A temporary folder of the run's own, <output_root>/tmp/<pipeline>/, removed when the run ends.

TFX writes into the system's temporary folder on every run and never removes what it wrote:
each Beam component given Beam arguments repackages TFX as an sdist for remote Beam workers
(52 MB, tfx/utils/dependency_utils.py), each component that loads the module file builds and
pip-installs its wheel (tfx/components/util/udf_utils.py), and Beam stages its files. A daily
pipeline would fill the disk (measured in docs/reliability.md#faults). So a local run points
Python's tempfile and its child processes (TMPDIR) at a folder of its own and removes it at the
end. A run killed before its end leaves the folder; the next run of the pipeline empties it
first: it holds the run lock (pipeline/run_lock.py), so no other run can be using it.
"""

import contextlib
import os
import shutil
import tempfile


@contextlib.contextmanager
def own_temp_dir(path: str):
    """Makes `path` (emptied first) the temporary folder of this process and its children for
    the block; removes it after."""
    shutil.rmtree(path, ignore_errors=True)  # a killed run's
    os.makedirs(path)
    saved_tempdir, saved_env = tempfile.tempdir, os.environ.get('TMPDIR')
    tempfile.tempdir = os.environ['TMPDIR'] = path
    try:
        yield path
    finally:
        tempfile.tempdir = saved_tempdir
        if saved_env is None:
            os.environ.pop('TMPDIR', None)
        else:
            os.environ['TMPDIR'] = saved_env
        shutil.rmtree(path, ignore_errors=True)
