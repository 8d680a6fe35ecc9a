"""The SQLite prompt-cache store: keys, layout, bulk reads/writes, failure modes."""

from __future__ import annotations

import hashlib
import json
import os
import pickle
import shutil
import sqlite3
import tempfile
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from types import MappingProxyType
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from minimallm._cache.sqlite import with_lock_retry
from minimallm._cache.store import (
    DB_FILENAME,
    CachedAnswer,
    CacheUnavailableError,
    CacheWriteError,
    PromptCache,
    cache_key,
    canonical_request_json,
)
from minimallm._errors import MinimaLlmError
from minimallm._types import MinimaLlmRequest

BACKOFFS = [0.05, 0.1, 0.2, 0.4, 0.8, 1.6]


def _original_key(model: str, req: MinimaLlmRequest) -> str:
    """The original implementation's formula, written out independently."""
    obj: dict[str, Any] = {"model": model, "messages": req.messages}
    if req.temperature is not None:
        obj["temperature"] = req.temperature
    if req.max_tokens is not None:
        obj["max_tokens"] = req.max_tokens
    if req.extra:
        obj["extra"] = req.extra
    canonical = json.dumps(obj, sort_keys=True, ensure_ascii=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()


def _rows(path: Path) -> dict[str, tuple[str, str | None, float]]:
    conn = sqlite3.connect(path)
    try:
        got = conn.execute("SELECT key, response_text, response_raw, created_at FROM cache")
        return {k: (t, r, c) for k, t, r, c in got}
    finally:
        conn.close()


# ---------------------------------------------------------------- keys


def test_cache_key_matches_hand_computed_digest() -> None:
    req = MinimaLlmRequest(
        "any-id", [{"role": "user", "content": "Say hello"}], temperature=0.0, max_tokens=8
    )
    canonical = (
        '{"max_tokens":8,"messages":[{"content":"Say hello","role":"user"}],'
        '"model":"gpt-4o-mini","temperature":0.0}'
    )
    assert canonical_request_json("gpt-4o-mini", req) == canonical
    # printf '%s' "$canonical" | sha256sum
    digest = "3e1359f41514b52e35664de40911fcf1331a904522cc6c1b36a3ff1255c46ad3"
    assert cache_key("gpt-4o-mini", req) == digest


def test_cache_key_with_extra_and_non_ascii_hand_computed() -> None:
    req = MinimaLlmRequest(
        "x",
        (MappingProxyType({"role": "user", "name": "bob", "content": "Café?"}),),
        extra={"top_p": 0.5, "response_format": {"type": "json_object"}},
    )
    assert canonical_request_json("m", req) == (
        '{"extra":{"response_format":{"type":"json_object"},"top_p":0.5},'
        '"messages":[{"content":"Caf\\u00e9?","name":"bob","role":"user"}],"model":"m"}'
    )
    assert cache_key("m", req) == (
        "9cb1f2616d28f37fa4195d4382e0dd8d13b1f1a89b1c806081b5e75fdd280d29"
    )


def test_cache_key_ignores_request_id_and_omits_unset_fields() -> None:
    msgs = [{"role": "user", "content": "hi"}]
    base = cache_key("m", MinimaLlmRequest("a", msgs))
    assert cache_key("m", MinimaLlmRequest("b", msgs, extra={})) == base
    assert cache_key("m", MinimaLlmRequest("a", msgs, temperature=0.0)) != base
    assert cache_key("m", MinimaLlmRequest("a", msgs, max_tokens=1)) != base
    assert cache_key("other", MinimaLlmRequest("a", msgs)) != base


_json_leaf = st.none() | st.booleans() | st.integers(-5, 5) | st.text(max_size=8)
_message = st.dictionaries(st.sampled_from(["role", "content", "name", "x"]), _json_leaf)


@settings(max_examples=60, deadline=None)
@given(
    model=st.text(max_size=10),
    messages=st.lists(_message, max_size=3),
    temperature=st.none() | st.floats(0, 2) | st.just(0),
    max_tokens=st.none() | st.integers(0, 10_000),
    extra=st.none() | st.dictionaries(st.text(max_size=5), _json_leaf, max_size=3),
)
def test_cache_key_is_the_original_formula(
    model: str,
    messages: list[dict[str, Any]],
    temperature: float | None,
    max_tokens: int | None,
    extra: dict[str, Any] | None,
) -> None:
    req = MinimaLlmRequest("id", messages, temperature, max_tokens, extra)
    assert cache_key(model, req) == _original_key(model, req)
    reordered = [dict(reversed(list(m.items()))) for m in messages]
    other = MinimaLlmRequest("other", reordered, temperature, max_tokens, extra)
    assert cache_key(model, other) == cache_key(model, req)


# ---------------------------------------------------------------- layout and round trips


def test_open_creates_minima_llm_0_2_7_layout_in_wal_mode(tmp_path: Path) -> None:
    with PromptCache.open(tmp_path / "a" / "b") as cache:
        assert cache.path == tmp_path / "a" / "b" / DB_FILENAME
        assert "journal_mode=wal" in repr(cache)
    conn = sqlite3.connect(tmp_path / "a" / "b" / "minima_llm.db")
    cols = [tuple(r[1:]) for r in conn.execute("PRAGMA table_info(cache)")]
    assert cols == [
        ("key", "TEXT", 0, None, 1),
        ("response_text", "TEXT", 1, None, 0),
        ("response_raw", "TEXT", 0, None, 0),
        ("created_at", "REAL", 0, None, 0),
        ("model", "TEXT", 0, None, 0),
        ("canonical", "TEXT", 0, None, 0),
    ]
    assert conn.execute("PRAGMA journal_mode").fetchone() == ("wal",)
    conn.close()


def test_put_then_get_many_across_chunks(tmp_path: Path) -> None:
    keys = [f"k{i}" for i in range(1203)]
    with PromptCache.open(tmp_path, wall_clock=lambda: 1234.5) as cache:
        assert cache.get_many([]) == {}
        cache.put_many([])
        cache.put_many([(k, f"text {k}", '{"n":1}' if i % 2 else None) for i, k in enumerate(keys)])
        asked = [*keys, "missing-1", keys[0], "missing-2"]
        got = cache.get_many(asked)
    assert set(got) == set(keys)
    assert got["k7"] == CachedAnswer("text k7", '{"n":1}')
    assert got["k8"] == CachedAnswer("text k8", None)
    assert {c for _, _, c in _rows(tmp_path / DB_FILENAME).values()} == {1234.5}


def test_put_many_replaces_and_later_rows_win(tmp_path: Path) -> None:
    clock = iter([10.0, 20.0])
    with PromptCache.open(tmp_path, wall_clock=lambda: next(clock)) as cache:
        cache.put_many([("a", "old", None), ("b", "b1", None)])
        cache.put_many([("a", "first", "{}"), ("a", "fresh", '{"x":1}')])
        assert cache.get_many(["a", "b"]) == {
            "a": CachedAnswer("fresh", '{"x":1}'),
            "b": CachedAnswer("b1", None),
        }
    rows = _rows(tmp_path / DB_FILENAME)
    assert rows["a"] == ("fresh", '{"x":1}', 20.0)
    assert rows["b"] == ("b1", None, 10.0)


def test_a_lone_surrogate_does_not_sink_its_batch(tmp_path: Path) -> None:
    bad = json.loads('"half a pair: \\ud83d!"')  # valid JSON, invalid Unicode
    with PromptCache.open(tmp_path) as cache:
        cache.put_many([("good", "fine “quoted”", None), ("bad", bad, f'{{"t":"{bad}"}}')])
        assert cache.get_many(["good", "bad"]) == {
            "good": CachedAnswer("fine “quoted”", None),
            "bad": CachedAnswer("half a pair: \ufffd!", '{"t":"half a pair: \ufffd!"}'),
        }


def test_reads_a_cache_built_by_hand_in_the_original_layout(tmp_path: Path) -> None:
    req = MinimaLlmRequest("q1", [{"role": "user", "content": "What is 2+2?"}], 0.7, 50)
    canonical = json.dumps(
        {
            "model": "gpt-3.5-turbo",
            "messages": [{"role": "user", "content": "What is 2+2?"}],
            "temperature": 0.7,
            "max_tokens": 50,
        },
        sort_keys=True,
        ensure_ascii=True,
        separators=(",", ":"),
    )
    key = hashlib.sha256(canonical.encode()).hexdigest()
    raw = json.dumps({"choices": [{"message": {"content": "4"}}]})
    conn = sqlite3.connect(tmp_path / "minima_llm.db")
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute(  # the original's DDL, created_at NOT NULL included
        "CREATE TABLE IF NOT EXISTS cache (key TEXT PRIMARY KEY, response_text TEXT NOT NULL,"
        " response_raw TEXT, created_at REAL NOT NULL)"
    )
    conn.execute("INSERT INTO cache VALUES (?, ?, ?, ?)", (key, "4", raw, 1.7e9))
    conn.commit()
    conn.close()
    with PromptCache.open(tmp_path) as cache:
        assert cache.get_many([cache_key("gpt-3.5-turbo", req)]) == {key: CachedAnswer("4", raw)}
        cache.put_many([("new", "n", None)])  # and it keeps accepting writes
        assert cache.get_many(["new"]) == {"new": CachedAnswer("n", None)}


def test_one_reader_and_one_writer_thread_share_a_cache(tmp_path: Path) -> None:
    errors: list[BaseException] = []
    with PromptCache.open(tmp_path) as cache:

        def writer() -> None:
            try:
                for b in range(40):
                    cache.put_many([(f"k{b}-{i}", f"v{b}-{i}", None) for i in range(50)])
            except BaseException as exc:  # reported to the test thread below
                errors.append(exc)

        def reader() -> None:
            try:
                for b in range(40):
                    got = cache.get_many([f"k{b}-{i}" for i in range(50)])
                    assert all(a.text == "v" + k[1:] for k, a in got.items())
            except BaseException as exc:
                errors.append(exc)

        threads = [threading.Thread(target=writer), threading.Thread(target=reader)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert errors == []
        assert len(cache.get_many([f"k{b}-{i}" for b in range(40) for i in range(50)])) == 2000


def test_close_is_idempotent_and_use_after_close_is_a_clear_error(tmp_path: Path) -> None:
    cache = PromptCache.open(tmp_path)
    cache.close()
    cache.close()
    assert "closed" in repr(cache)
    with pytest.raises(CacheUnavailableError, match="is closed"):
        cache.get_many(["a"])
    with pytest.raises(CacheWriteError, match="is closed"):
        cache.put_many([("a", "b", None)])
    assert issubclass(CacheUnavailableError, MinimaLlmError)
    assert issubclass(CacheWriteError, MinimaLlmError)


# ---------------------------------------------------------------- locks


def test_retry_backs_off_on_locks_only() -> None:
    delays: list[float] = []
    calls = iter([sqlite3.OperationalError("database is locked")] * 3 + [None])

    def flaky() -> str:
        exc = next(calls)
        if exc is not None:
            raise exc
        return "done"

    assert with_lock_retry(flaky, delays.append) == "done"
    assert delays == BACKOFFS[:3]

    def broken() -> None:
        raise sqlite3.OperationalError("disk I/O error")

    with pytest.raises(sqlite3.OperationalError, match="disk I/O"):
        with_lock_retry(broken, delays.append)
    assert delays == BACKOFFS[:3]


def _hold_write_lock(path: Path) -> sqlite3.Connection:
    blocker = sqlite3.connect(path, isolation_level=None, timeout=0)
    blocker.execute("BEGIN IMMEDIATE")
    blocker.execute(
        "INSERT OR REPLACE INTO cache (key, response_text, response_raw, created_at) "
        "VALUES ('pending', 'p', NULL, 0)"
    )
    return blocker


def test_a_lock_released_during_backoff_is_waited_out(tmp_path: Path) -> None:
    delays: list[float] = []
    blockers: list[sqlite3.Connection] = []

    def sleep(d: float) -> None:  # the other process finishes while we back off
        delays.append(d)
        blockers[0].execute("COMMIT")

    with PromptCache.open(tmp_path, busy_timeout_s=0, sleep=sleep) as cache:
        cache.put_many([("a", "1", None)])
        blockers.append(_hold_write_lock(cache.path))
        cache.put_many([("b", "2", None)])
        assert delays == [0.05]
        assert set(cache.get_many(["a", "b", "pending"])) == {"a", "b", "pending"}
    blockers[0].close()


def test_a_lock_held_beyond_the_budget_is_a_clear_write_error(tmp_path: Path) -> None:
    delays: list[float] = []
    with PromptCache.open(tmp_path, busy_timeout_s=0, sleep=delays.append) as cache:
        cache.put_many([("a", "1", None)])
        blocker = _hold_write_lock(cache.path)
        with pytest.raises(CacheWriteError, match="still locked") as info:
            cache.put_many([("b", "2", None)])
        assert str(cache.path) in str(info.value)
        assert delays == BACKOFFS
        # WAL: reads are not blocked by the writer and see the committed snapshot.
        delays.clear()
        assert cache.get_many(["a", "b", "pending"]) == {"a": CachedAnswer("1", None)}
        assert delays == []
        blocker.execute("ROLLBACK")
        blocker.close()
        cache.put_many([("b", "2", None)])
        assert set(cache.get_many(["a", "b"])) == {"a", "b"}


# ---------------------------------------------------------------- failure modes at open


def test_a_cache_dir_that_is_a_file(tmp_path: Path) -> None:
    (tmp_path / "f").write_text("x")
    with pytest.raises(CacheUnavailableError, match="it is a file") as info:
        PromptCache.open(tmp_path / "f")
    assert str(tmp_path / "f") in str(info.value)


def test_a_cache_dir_that_cannot_be_created(tmp_path: Path) -> None:
    (tmp_path / "f").write_text("x")
    with pytest.raises(CacheUnavailableError, match="Not a directory"):
        PromptCache.open(tmp_path / "f" / "sub")


def test_a_database_path_that_is_a_directory(tmp_path: Path) -> None:
    (tmp_path / DB_FILENAME).mkdir()
    with pytest.raises(CacheUnavailableError, match="is not a file"):
        PromptCache.open(tmp_path)


def test_a_corrupt_file_is_refused_and_left_untouched(tmp_path: Path) -> None:
    db = tmp_path / DB_FILENAME
    garbage = b"these are somebody's notes, not a database\n" * 200
    db.write_bytes(garbage)
    with pytest.raises(CacheUnavailableError, match="file is not a database") as info:
        PromptCache.open(tmp_path)
    assert str(db) in str(info.value)
    assert db.read_bytes() == garbage
    assert os.listdir(tmp_path) == [DB_FILENAME]


def test_a_table_with_other_columns_is_refused(tmp_path: Path) -> None:
    conn = sqlite3.connect(tmp_path / DB_FILENAME)
    conn.execute("CREATE TABLE cache (key TEXT PRIMARY KEY, value TEXT)")
    conn.close()
    with pytest.raises(CacheUnavailableError, match="expected at least"):
        PromptCache.open(tmp_path)


def test_a_corrupt_page_is_a_read_error_not_a_crash(tmp_path: Path) -> None:
    with PromptCache.open(tmp_path) as cache:
        cache.put_many([(f"k{i}", "v" * 100, None) for i in range(200)])
    db = tmp_path / DB_FILENAME
    size = db.stat().st_size
    with db.open("r+b") as f:  # keep page 1 (the schema), wreck the rest
        f.seek(4096)
        f.write(b"\xff" * (size - 4096))
    with PromptCache.open(tmp_path) as cache:
        with pytest.raises(CacheUnavailableError, match="malformed"):
            cache.get_many(["k1"])
        with pytest.raises(CacheWriteError, match="malformed"):
            cache.put_many([("k1", "x", None)])


# ---------------------------------------------------------------- failure modes at write


def test_a_full_disk_rolls_the_batch_back_and_keeps_earlier_rows(tmp_path: Path) -> None:
    with PromptCache.open(tmp_path) as cache:
        cache.put_many([(f"old{i}", "kept", None) for i in range(20)])
        pages = cache._writer.execute("PRAGMA page_count").fetchone()[0]
        # SQLITE_FULL, exactly what a full disk raises, deterministically.
        cache._writer.execute(f"PRAGMA max_page_count = {pages + 2}")
        big = [(f"new{i}", "x" * 2000, None) for i in range(50)]
        with pytest.raises(CacheWriteError, match="full") as info:
            cache.put_many(big)
        assert "50 answers" in str(info.value)
        assert "intact" in str(info.value)
        assert cache.get_many([k for k, _, _ in big]) == {}
        assert len(cache.get_many([f"old{i}" for i in range(20)])) == 20
        cache._writer.execute("PRAGMA max_page_count = 1073741823")
        cache.put_many(big)
        assert len(cache.get_many([k for k, _, _ in big])) == 50
        assert cache._writer.execute("PRAGMA integrity_check").fetchone() == ("ok",)


@pytest.fixture
def shared_tmp() -> Iterator[Path]:
    """A directory an unprivileged user can traverse (pytest's tmp_path is 0700)."""
    d = Path(tempfile.mkdtemp(prefix="minimallm-cache-"))
    d.chmod(0o755)
    yield d
    for p in [d, *d.rglob("*")]:
        if p.is_dir():
            p.chmod(0o755)
    shutil.rmtree(d)


def _as_unprivileged(fn: Callable[[], Any]) -> Any:
    """Run ``fn`` in a forked child without root's power to ignore permissions."""
    if not hasattr(os, "fork"):
        pytest.skip("needs os.fork")
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:  # child: never return into pytest
        try:
            if os.geteuid() == 0:
                os.setgid(65534)
                os.setuid(65534)
            out: tuple[str, Any] = ("ok", fn())
        except BaseException as exc:
            out = ("raised", (type(exc).__name__, str(exc)))
        with os.fdopen(w, "wb") as f:
            f.write(pickle.dumps(out))
        os._exit(0)
    os.close(w)
    with os.fdopen(r, "rb") as f:
        status, value = pickle.loads(f.read())
    os.waitpid(pid, 0)
    if status == "raised" and value[0] == "PermissionError" and "setuid" in value[1]:
        pytest.skip(f"cannot drop root privileges here: {value[1]}")
    if status == "raised":
        raise AssertionError(f"child raised {value[0]}: {value[1]}")
    return value


def test_a_read_only_directory_is_a_clear_open_error(shared_tmp: Path) -> None:
    ro = shared_tmp / "ro"
    ro.mkdir(mode=0o555)
    ro.chmod(0o555)

    def attempt() -> tuple[str, str]:
        try:
            PromptCache.open(ro)
        except CacheUnavailableError as exc:
            return ("CacheUnavailableError", str(exc))
        return ("opened", "")

    kind, message = _as_unprivileged(attempt)
    assert kind == "CacheUnavailableError"
    assert str(ro / DB_FILENAME) in message
    assert "writable=False" in message
    assert os.listdir(ro) == []


def test_a_read_only_database_reads_but_refuses_writes(shared_tmp: Path) -> None:
    with PromptCache.open(shared_tmp) as cache:
        cache.put_many([("a", "paid for", None)])
    db = shared_tmp / DB_FILENAME
    db.chmod(0o444)
    shared_tmp.chmod(0o777)  # -wal/-shm may be created; the database itself is read-only

    def attempt() -> tuple[dict[str, CachedAnswer], str]:
        with PromptCache.open(shared_tmp) as c:
            hits = c.get_many(["a"])
            try:
                c.put_many([("b", "new", None)])
            except CacheWriteError as exc:
                return hits, str(exc)
        return hits, "written"

    hits, message = _as_unprivileged(attempt)
    assert hits == {"a": CachedAnswer("paid for", None)}
    assert "readonly" in message
    assert str(db) in message
    assert _rows(db).keys() == {"a"}


def test_a_cache_inherited_across_fork_is_refused(tmp_path: Path) -> None:
    with PromptCache.open(tmp_path) as cache:
        cache.put_many([("a", "1", None)])

        def in_child() -> str:
            try:
                cache.get_many(["a"])
            except CacheUnavailableError as exc:
                cache.close()  # must not touch the parent's connections
                return str(exc)
            return "read"

        assert "fork()" in _as_unprivileged(in_child)
        assert cache.get_many(["a"]) == {"a": CachedAnswer("1", None)}
