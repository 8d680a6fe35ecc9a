"""The provider's Batch API for ``run-batch --provider-batch`` and ``batch-status``.

One module per job: ``_http`` (the project's HTTP connection, any method, bodies
streamed), ``_api`` (the Batch API calls), ``_state`` (the SQLite state file beside
OUTPUT), ``_plan`` (what to upload, in chunk files), ``_drive`` (upload, create, poll,
download; trio), ``_collect`` (checking what came back, writing OUTPUT/ERRORS in input
order), ``_display`` (the live display), ``_command`` (the run, start to end) and
``_status`` (``minimallm batch-status``).
"""

from minimallm.cli.provider_batch._command import add_flags, run
from minimallm.cli.provider_batch._status import add_parser as add_status_parser
from minimallm.cli.provider_batch._status import run as run_status

__all__ = ["add_flags", "add_status_parser", "run", "run_status"]
