"""New ids are time-ordered (storage/models.py's `new_id`, the executor's node run ids): new
rows go to the last pages of a key instead of a random page of each index, which is most of
what SQLite's commits write under load. They stay unique and, for `new_id`, valid UUIDs."""

from __future__ import annotations

import itertools
import time
import uuid

from engine.executor import new_run_id
from storage.models import new_id


def _across_milliseconds(make: object) -> list[str]:
    made: list[str] = []
    for _ in range(5):
        made += [make() for _ in range(50)]  # type: ignore[operator]
        deadline = time.monotonic() + 0.002
        while time.monotonic() < deadline:
            pass  # the next batch in a later millisecond
    return made


def test_ids_sort_in_the_order_they_were_made() -> None:
    for make in (new_id, new_run_id):
        made = _across_milliseconds(make)
        assert len(set(made)) == len(made)
        # Within a millisecond the order is random; across milliseconds it is the order made.
        batches = [made[i : i + 50] for i in range(0, len(made), 50)]
        for earlier, later in itertools.pairwise(batches):
            assert max(earlier) < min(later)


def test_new_id_is_a_uuid_of_version_7_and_run_ids_keep_their_form() -> None:
    value = uuid.UUID(new_id())
    assert value.version == 7
    assert value.variant == uuid.RFC_4122
    assert abs((value.int >> 80) - time.time_ns() // 1_000_000) < 60_000
    run_id = new_run_id()
    assert len(run_id) == 32 and int(run_id, 16) >= 0
