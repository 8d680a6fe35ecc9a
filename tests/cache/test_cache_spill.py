"""Spill files: one owner each, torn lines skipped, orphans adopted once, nothing lost."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from minimallm._cache.spill import SpillFiles


def db(tmp_path: Path) -> Path:
    return tmp_path / "minima_llm.db"


def test_rows_come_back_in_order_and_clear_empties_the_file(tmp_path: Path) -> None:
    spill = SpillFiles(db(tmp_path))
    assert spill.paths == [] and spill.read() == []
    spill.append([("a", "1", None), ("b", "2", '{"x": "\u00e9\ud800"}')])
    spill.append([("a", "3", None)])
    assert spill.rows == 3
    assert [row[:3] for row in spill.read()] == [
        ("a", "1", None),
        ("b", "2", '{"x": "\u00e9\ud800"}'),
        ("a", "3", None),
    ]
    [path] = spill.paths
    assert path.name.startswith("minima_llm.db.spill.") and path.suffix == ".jsonl"
    spill.clear()
    assert spill.read() == [] and spill.rows == 0
    spill.close()
    assert not path.exists()  # an empty file of ours is removed on close


def test_minima_llm_columns_survive_a_spill(tmp_path: Path) -> None:
    from minimallm._cache.store import StoreRow

    spill = SpillFiles(db(tmp_path))
    row = StoreRow("k", "text", '{"a": 1}', "gpt-x", '{"model": "gpt-x"}', 1234.5)
    spill.append([row])
    assert spill.read() == [row]
    spill.clear()
    spill.close()


def test_a_live_owners_file_is_never_adopted(tmp_path: Path) -> None:
    owner = SpillFiles(db(tmp_path))
    owner.append([("k", "v", None)])
    other = SpillFiles(db(tmp_path))
    assert other.adopt_orphans() == 0  # the owner holds its lock (flock: per open file)
    owner.close()  # with rows: the file stays, unlocked
    assert other.adopt_orphans() == 1
    third = SpillFiles(db(tmp_path))
    assert third.adopt_orphans() == 0  # adopted by `other`, which holds it now
    assert [row[:3] for row in other.read()] == [("k", "v", None)]
    other.clear()
    assert list(tmp_path.iterdir()) == []


def test_a_torn_last_line_of_a_killed_writer_is_skipped(tmp_path: Path) -> None:
    code = (
        "import os, sys; from pathlib import Path; from minimallm._cache.spill import SpillFiles;"
        "s = SpillFiles(Path(sys.argv[1])); s.append([('k1', 'v1', None)]);"
        'os.write(s._own.file.fileno(), b\'["k2", "v\'); os.kill(os.getpid(), 9)'
    )
    proc = subprocess.run([sys.executable, "-c", code, str(db(tmp_path))], check=False)
    assert proc.returncode == -9
    heir = SpillFiles(db(tmp_path))
    assert heir.adopt_orphans() == 1  # the kernel dropped the dead owner's lock
    assert [row[:3] for row in heir.read()] == [("k1", "v1", None)]
    heir.clear()
    assert not any(p.name.endswith(".jsonl") for p in tmp_path.iterdir())
