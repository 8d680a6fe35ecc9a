"""The batch tally (_progress/snapshot.py): every attempt counted once, whichever way it
reached the Monitor, and items in progress as the engine tells them."""

from __future__ import annotations

from minimallm._progress import ProgressTally


def test_an_answered_item_counts_its_attempt_and_the_servers_time() -> None:
    tally = ProgressTally(3, 0.0)
    # item 0: one refused attempt (reported on its own), then the answer (with the item)
    tally.attempt_failed(0.0, 0.5, answered=True)
    tally.item_finished(0.0, 2.0, "ok", attempts=2, first_sent_at=0.0, server_s=1.0)
    # item 1: answered at once; item 2: from the cache (no attempt)
    tally.item_finished(0.0, 3.0, "ok", attempts=1, first_sent_at=0.0, server_s=3.0)
    tally.item_finished(0.0, 3.0, "cached")
    snap = tally.snapshot("done", 4.0)
    assert (snap.attempts, snap.retries, snap.done, snap.ok, snap.cached) == (3, 1, 3, 3, 1)
    assert snap.server_s == 1.0  # the median of 0.5, 1.0 and 3.0
    assert snap.send_rate == 3 / 4.0


def test_items_in_progress_are_the_engines_word() -> None:
    tally = ProgressTally(10, 0.0)
    snap = tally.snapshot("stall", 30.0, in_progress=4, oldest_start=5.0)
    assert (snap.in_progress, snap.oldest_s) == (4, 25.0)
    assert tally.snapshot("stall", 30.0).oldest_s is None
