"""Fails fast when Beam arguments need Google Cloud credentials that the container lacks.

Without credentials, Beam's Dataflow client falls back to an interactive OAuth prompt and the
pod waits at it instead of failing. Checking Application Default Credentials first (workload
identity, a mounted key in GOOGLE_APPLICATION_CREDENTIALS, the metadata server) turns that into
an error that says what is missing.
"""

from typing import Sequence

import google.auth
from google.auth import exceptions


class MissingCredentialsError(RuntimeError):
    """The Beam arguments need Google Cloud, and no credentials were found."""


def needs_google_cloud(beam_pipeline_args: Sequence[str]) -> bool:
    """Whether the Beam arguments run on Dataflow or name a gs:// location."""
    return any(arg == '--runner=DataflowRunner' or 'gs://' in arg for arg in beam_pipeline_args)


def check_beam_credentials(beam_pipeline_args: Sequence[str]) -> None:
    """Raises MissingCredentialsError if the arguments need Google Cloud and no Application
    Default Credentials are available."""
    if not needs_google_cloud(beam_pipeline_args or ()):
        return
    try:
        google.auth.default()
    except exceptions.DefaultCredentialsError as e:
        raise MissingCredentialsError(
            f'The Beam arguments {list(beam_pipeline_args)} need Google Cloud credentials and '
            f"this container has none ({e}). On GKE bind the pipeline's Kubernetes service "
            'account to a Google service account (workload identity), or mount a key and set '
            'GOOGLE_APPLICATION_CREDENTIALS; or compile with other Beam arguments '
            '(FUNNEL_KUBEFLOW_BEAM_PIPELINE_ARGS).') from None
