"""The provider's Batch API for ``run-batch --provider-batch`` and ``batch-status``.

One module per job: ``_flags`` (the command-line flags; light, so ``--help`` stays
fast), ``_http`` (the project's HTTP connection, any method, bodies streamed),
``_api`` (the Batch API calls), ``_state`` (the SQLite state file beside OUTPUT),
``_plan`` (what to upload, in chunk files), ``_drive`` (upload, create, poll,
download; trio), ``_collect`` (checking what came back, writing OUTPUT/ERRORS in input
order), ``_display`` (the live display), ``_command`` (the run, start to end:
:func:`._command.run`) and ``_status`` (``minimallm batch-status``:
:func:`._status.run`). Nothing is imported here: import the module you need.
"""
