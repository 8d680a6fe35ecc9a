"""The Limiter's report handling as it was before its fast path (commit bee2737), frozen:
the oracle of ``tests/actors/test_limiter_differential.py``. Copies of
``actors/limiter.py``, ``_policy/concurrency.py``, ``_policy/congestion.py`` and
``_policy/flow.py`` with their imports pointed here; never edit them to follow the code
they are compared with. A change meant to alter a decision ends this test's use: delete
it with this package rather than bend the comparison."""
