"""Ray Data: run a dataset through minimallm with ``ds.map_batches`` (extra ``[ray]``).

::

    import ray
    from minimallm.ray import MinimaLlmMapper

    answered = ds.map_batches(
        MinimaLlmMapper,
        fn_constructor_kwargs={"prompt_column": "question", "pool_size": 2},
        compute=ray.data.ActorPoolStrategy(size=2),
        batch_size=1000,
        batch_format="pandas",
    )

Each actor builds its backend from **its own environment** (``OPENAI_BASE_URL``,
``OPENAI_API_KEY``, ``RPM``, ``CACHE_DIR``...), so no key is pickled; nothing here
imports Ray (``import minimallm.ray`` works without it; Ray imports this module
inside its workers). See :class:`MinimaLlmMapper` for the columns.
"""

from minimallm.ray._mapper import ANSWER_COLUMNS, MinimaLlmMapper, split_limit

__all__ = ["ANSWER_COLUMNS", "MinimaLlmMapper", "split_limit"]
