"""minimallm.ray: the mapper on its own (no Ray needed, pandas/numpy/pyarrow batches) and
a Ray Data pipeline on a local Ray pinned to loopback (marker ``ray``)."""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from conftest import SECRET
from minimallm.mock import MockServerConfig, MockServerThread
from minimallm.ray import MinimaLlmMapper, split_limit
from minimallm.ray._mapper import actor_config

REQUIRE_RAY = os.environ.get("MINIMALLM_REQUIRE_RAY") == "1"


def settings(mock: MockServerThread, tmp_path: Path, **more: str) -> dict[str, str]:
    return {
        "OPENAI_BASE_URL": mock.base_url,
        "OPENAI_MODEL": "mock-model",
        "CACHE_DIR": str(tmp_path / "cache"),
        "RPM": "0",
        "BASE_BACKOFF_S": "0.01",
        "MAX_BACKOFF_S": "0.05",
        "BATCH_HEARTBEAT_S": "0",
        **more,
    }


def test_import_minimallm_does_not_import_ray() -> None:
    import subprocess

    code = "import sys, minimallm, minimallm.ray; assert 'ray' not in sys.modules"
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)


def test_split_limit() -> None:
    assert split_limit(600, 2) == 300
    assert split_limit(5, 8) == 1  # never 0 (0 means no limit)
    assert split_limit(0, 4) == 0
    with pytest.raises(ValueError, match="pool_size"):
        split_limit(600, 0)


def test_actor_config_splits_the_rate_or_points_at_serve(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("OPENAI_BASE_URL", "http://127.0.0.1:1/v1")
    monkeypatch.setenv("OPENAI_MODEL", "m")
    monkeypatch.setenv("RPM", "600")
    monkeypatch.setenv("OPENAI_API_KEY", SECRET)
    cfg = actor_config(4, None, None)
    assert cfg.rpm == 150 and cfg.batch.max_failures is None
    assert cfg.api_key_value() == SECRET  # from the actor's environment
    monkeypatch.setenv("MINIMALLM_SERVE_KEY", "serve-key")
    served = actor_config(4, "http://127.0.0.1:8990/v1", None)
    assert served.rpm == 0 and served.base_url.startswith("http://127.0.0.1:8990")
    assert served.api_key_value() == "serve-key"
    with pytest.raises(ValueError, match="OPENAI_API_KEY"):
        actor_config(None, None, {"OPENAI_API_KEY": "x"})


@pytest.fixture
def faulty_mock() -> Iterator[MockServerThread]:
    with MockServerThread(MockServerConfig(fault_rates={"500": 0.02}, seed=7)) as mock:
        yield mock


@pytest.mark.parametrize("fmt", ["pandas", "numpy", "pyarrow"])
def test_mapper_answers_each_row_or_names_its_failure(
    fmt: str, faulty_mock: MockServerThread, tmp_path: Path
) -> None:
    pytest.importorskip("pandas" if fmt == "pandas" else "pyarrow" if fmt == "pyarrow" else "numpy")
    mapper = MinimaLlmMapper(
        prompt_column="q", settings=settings(faulty_mock, tmp_path, MAX_ATTEMPTS="1")
    )
    prompts = [f"question {i}" for i in range(300)]
    batch: Any
    if fmt == "pandas":
        import pandas as pd

        batch = pd.DataFrame({"q": prompts, "n": range(300)})
    elif fmt == "pyarrow":
        import pyarrow as pa

        batch = pa.table({"q": prompts, "n": list(range(300))})
    else:
        import numpy as np

        batch = {"q": np.array(prompts), "n": np.arange(300)}
    out = mapper(batch)
    columns = out.to_pydict() if fmt == "pyarrow" else {k: list(out[k]) for k in out}
    assert list(columns["n"]) == list(range(300))  # input columns kept, in order
    failed = [i for i, e in enumerate(columns["error_type"]) if e is not None]
    for i in range(300):
        if i in failed:
            assert columns["text"][i] is None and "500" in columns["error"][i]
        else:
            assert columns["text"][i] == f"echo: question {i}" and columns["error"][i] is None
    assert 0 < len(failed) < 30  # 2 % of 300, one attempt each
    mapper.backend.close_sync()


def test_mapper_takes_message_lists(mock_server: MockServerThread, tmp_path: Path) -> None:
    pd = pytest.importorskip("pandas")
    mapper = MinimaLlmMapper(messages_column="m", settings=settings(mock_server, tmp_path))
    frame = pd.DataFrame(
        {"m": [[{"role": "user", "content": "hi"}], [{"role": "user", "content": "yo"}]]}
    )
    out = mapper(frame)
    assert list(out["text"]) == ["echo: hi", "echo: yo"]
    mapper.backend.close_sync()


# -- a real Ray Data pipeline ---------------------------------------------------------


LOOPBACK_RAY = "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"
"""Set to 0 before Ray is imported, Ray takes 127.0.0.1 as the node's address and binds
its servers there; ``_node_ip_address="127.0.0.1"`` alone is resolved to the host's
address (``ray._private.services.resolve_ip_for_localhost``)."""


@pytest.fixture(scope="module")
def local_ray() -> Iterator[Any]:
    os.environ.setdefault(LOOPBACK_RAY, "0")
    try:
        import ray.data

        import ray
    except ImportError:
        if REQUIRE_RAY:
            raise
        pytest.skip("ray is not installed: pip install 'minimallm[ray]' to run the Ray tests")
    previous = os.environ.get("OPENAI_API_KEY")
    os.environ["OPENAI_API_KEY"] = SECRET  # the actors read the key from their environment
    ray.init(
        address="local",
        include_dashboard=False,
        num_cpus=2,
        _node_ip_address="127.0.0.1",
        log_to_driver=False,
        configure_logging=False,
    )
    ctx = ray.data.DataContext.get_current()
    ctx.enable_progress_bars = False
    try:
        yield ray
    finally:
        ray.shutdown()
        if previous is None:
            os.environ.pop("OPENAI_API_KEY", None)
        else:
            os.environ["OPENAI_API_KEY"] = previous


@pytest.mark.ray
def test_local_ray_is_pinned_to_loopback(local_ray: Any) -> None:
    assert local_ray.util.get_node_ip_address() == "127.0.0.1"


@pytest.mark.ray
@pytest.mark.slow
def test_ray_pipeline_every_row_answered_or_failed_then_cached(
    local_ray: Any, faulty_mock: MockServerThread, tmp_path: Path
) -> None:
    ray = local_ray
    n = 2000
    ds = ray.data.from_items([{"id": i, "prompt": f"row {i}"} for i in range(n)])

    def run() -> list[dict[str, Any]]:
        answered = ds.map_batches(
            MinimaLlmMapper,
            fn_constructor_kwargs={
                "id_column": "id",
                "pool_size": 2,
                "settings": settings(faulty_mock, tmp_path, MAX_ATTEMPTS="1"),
            },
            compute=ray.data.ActorPoolStrategy(size=2),
            batch_size=500,
            batch_format="pandas",
        )
        rows: list[dict[str, Any]] = answered.take_all()
        return rows

    rows = run()  # a failed task would raise here
    assert sorted(r["id"] for r in rows) == list(range(n))
    failed = [r for r in rows if r["error_type"] is not None]
    for r in rows:
        assert (r["text"] == f"echo: row {r['id']}") != (r["error_type"] is not None)
    assert 0 < len(failed) < 0.05 * n
    assert all(
        r["authorization"] == f"Bearer {SECRET}"
        for r in [{"authorization": q.headers["authorization"]} for q in faulty_mock.requests[:5]]
    )
    sent = faulty_mock.stats.requests_total
    assert sent == n  # one attempt each

    faulty_mock.reset()
    again = run()
    answered_before = {r["id"] for r in rows if r["error_type"] is None}
    cached = {r["id"] for r in again if r["cached"]}
    assert answered_before <= cached
    # the rerun sends only the rows that failed the first time (answers were cached)
    assert faulty_mock.stats.requests_total == len(failed)


@pytest.mark.ray
@pytest.mark.slow
def test_ray_actors_through_one_minimallm_serve(
    local_ray: Any, mock_server: MockServerThread, tmp_path: Path
) -> None:
    from serve_process import ServeProcess

    ray = local_ray
    upstream = {**settings(mock_server, tmp_path), "OPENAI_API_KEY": SECRET}
    with ServeProcess({**upstream, "MINIMALLM_SERVE_KEY": ""}) as serve:
        ds = ray.data.from_items([{"id": i, "prompt": f"row {i % 50}"} for i in range(200)])
        rows = ds.map_batches(
            MinimaLlmMapper,
            fn_constructor_kwargs={
                "id_column": "id",
                "base_url": serve.base_url,
                "settings": {"OPENAI_MODEL": "mock-model", "CACHE_DIR": ""},
            },
            compute=ray.data.ActorPoolStrategy(size=2),
            batch_size=50,
            batch_format="pyarrow",
        ).take_all()
    assert sorted(r["id"] for r in rows) == list(range(200))
    assert all(r["text"] == f"echo: row {r['id'] % 50}" for r in rows)
    # the 50 distinct prompts went upstream once each: serve's cache and single flight
    assert mock_server.stats.requests_total == 50
