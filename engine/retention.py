"""What an ended execution keeps of its data, per workflow with server-wide defaults (pure).

A workflow's settings (engine/settings.py) may say, for successful runs, failed ones (and
cancelled ones) and manual ones (whatever their outcome):

- `all`: everything: the execution row, its node runs, inputs, outputs and events;
- `summary`: the execution row, its node runs and events (statuses, timings, item counts,
  errors) without any input, output or preview;
- `none`: nothing: stored like `summary` when it ends, then deleted by the pruner a short
  grace period later (`LOOM_PRUNE_NONE_AFTER_S`), so that whoever reads its end back
  meanwhile (a cancel, a webhook's repeat, a late subscriber) finds it.

How long what is kept stays is the pruner's business (storage/retention.py); the settings
that bound it are read there too (`RetentionPolicy.with_workflow`).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from engine.states import ExecutionStatus


class SaveData(StrEnum):
    ALL = "all"
    SUMMARY = "summary"
    NONE = "none"


SAVE_DATA_VALUES = [value.value for value in SaveData]

# The workflow settings that say what is kept, and their server-wide defaults
# (`LOOM_SAVE_DATA_ON_SUCCESS`, `LOOM_SAVE_DATA_ON_ERROR`, `LOOM_SAVE_MANUAL_EXECUTIONS`).
ON_SUCCESS = "saveDataOnSuccess"
ON_ERROR = "saveDataOnError"
MANUAL = "saveManualExecutions"

# The workflow settings that bound how long its executions stay (hours, count).
MAX_AGE_HOURS = "executionsMaxAgeHours"
MAX_COUNT = "executionsMaxCount"
FAILED_MAX_AGE_HOURS = "failedExecutionsMaxAgeHours"


@dataclass(frozen=True, slots=True)
class SaveDefaults:
    """The server-wide defaults of what ended executions keep."""

    on_success: SaveData = SaveData.ALL
    on_error: SaveData = SaveData.ALL
    manual: SaveData = SaveData.ALL


@dataclass(frozen=True, slots=True)
class SaveChoice:
    """What one execution keeps, by how it ends."""

    on_success: SaveData = SaveData.ALL
    on_error: SaveData = SaveData.ALL

    def for_status(self, status: ExecutionStatus) -> SaveData:
        if not status.is_terminal:
            return SaveData.ALL
        return self.on_success if status is ExecutionStatus.SUCCEEDED else self.on_error


KEEP_ALL = SaveChoice()
SAVE_ALL = SaveDefaults()


def save_choice(
    settings: Mapping[str, Any],
    mode: str,
    defaults: SaveDefaults,
    *,
    answer_read_back: bool = False,
) -> SaveChoice:
    """What an execution of a workflow with `settings`, started in `mode`, keeps.

    `answer_read_back`: someone reads its outcome back from the database once it ended (a
    caller that waits for a sub-workflow, a webhook answered by another process): it keeps
    everything, and the pruner removes it like any other later.
    """
    if answer_read_back:
        return KEEP_ALL
    if mode == "manual":
        manual = SaveData(settings.get(MANUAL, defaults.manual))
        return SaveChoice(manual, manual)
    return SaveChoice(
        SaveData(settings.get(ON_SUCCESS, defaults.on_success)),
        SaveData(settings.get(ON_ERROR, defaults.on_error)),
    )


def settings_schema() -> dict[str, Any]:
    """The JSON Schema properties of the settings above (engine/settings.py)."""

    def saving(title: str, description: str) -> dict[str, Any]:
        return {"enum": SAVE_DATA_VALUES, "title": title, "description": description}

    def bound(title: str, description: str, maximum: int) -> dict[str, Any]:
        return {
            "type": "integer",
            "title": title,
            "description": description,
            "minimum": 1,
            "maximum": maximum,
        }

    return {
        ON_SUCCESS: saving(
            "Save data of successful runs",
            "all, summary (statuses and timings, no inputs or outputs) or none.",
        ),
        ON_ERROR: saving(
            "Save data of failed runs", "all, summary or none; also for cancelled runs."
        ),
        MANUAL: saving("Save data of manual runs", "all, summary or none, whatever the outcome."),
        MAX_AGE_HOURS: bound(
            "Keep executions for (hours)", "Older executions are pruned.", 100 * 365 * 24
        ),
        MAX_COUNT: bound(
            "Keep at most this many executions", "Older ones beyond it are pruned.", 10**9
        ),
        FAILED_MAX_AGE_HOURS: bound(
            "Keep failed executions for (hours)",
            "Failed and cancelled executions are pruned by this age only (not by count).",
            100 * 365 * 24,
        ),
    }
