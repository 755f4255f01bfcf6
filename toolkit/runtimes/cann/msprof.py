"""msprof's op_summary CSV → the device tasks of each decode step, AI_CPU fallbacks counted apart.

Column names, N/A rules and folder layouts follow Huawei's msprof pages on hiascend.com:
- "op_summary (Operator Details)", CANN 8.5:
  https://www.hiascend.com/document/detail/en/canncommercial/850/devaids/profiling/atlasprofiling_16_0067.html
- its CANN 8.0.RC1 Chinese edition ("AI Core和AI CPU算子数据"), which says Model Name and Infer ID are
  left out by default and for single operators, and that task_time=l0 writes N/A for OP Type and Task Type:
  https://www.hiascend.com/doc_center/source/zh/CANNCommunityEdition/80RC1alpha001/devaids/auxiliarydevtool/atlasprofiling_16_0165.html
- "General Description" (PROF_*/mindstudio_profiler_output/, CANN 7 and later):
  https://www.hiascend.com/document/detail/en/canncommercial/850/devaids/profiling/atlasprofiling_16_0056.html
- "Profiling数据导出", CANN 6.0.1 (PROF_*/device_{id}/summary/{name}_{device}_{model}_{iter}.csv):
  https://www.hiascend.com/doc_center/source/zh/canncommercial/601/devtools/auxiliarydevtool/atlasprofiling_16_0098.html
"""

from __future__ import annotations

import csv
import math
from collections import Counter, defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO, Callable, Iterator, Sequence

from ...errors import ArtifactError
from ...files import brief, open_regular
from ...profiler.contract import OpEvent, OpReport

NOT_COLLECTED = "N/A"  # what msprof writes for a value it did not collect
FALLBACK_TASK_TYPE = "AI_CPU"  # an op the AI Core could not run, handed to the device's CPU cores
# Searched in order and the first that holds files wins: CANN 7+ keeps a session's per-device summaries
# beside the merged copy, and reading both would count every task twice.
LAYOUTS = (
    "op_summary_*.csv",  # the folder given is itself an output folder
    "**/mindstudio_profiler_output/op_summary_*.csv",  # CANN 7+: op_summary_{time}.csv, op_summary_slice_{n}_{time}.csv
    "**/device_*/summary/op_summary_*.csv",  # CANN 6 and earlier
)
# CANN 6's start column has no unit, and its pages disagree on it (6.0.RC1: us, 6.0.1: ns): refused, not guessed.
UNITLESS_START = "Task Start Time"
STEP_BY_EXECUTION = "each decode step's model execution (Model ID, Infer ID)"
STEP_BY_WINDOW = "each decode step's host-timed window"


@dataclass(frozen=True)
class Task:
    """One op_summary row: a task the device ran. None where msprof wrote N/A or left the column out."""

    name: str
    start_us: float  # msprof's clock (host wall time, microseconds)
    dur_us: float
    op_type: str | None
    task_type: str | None
    model_id: int | None
    infer_id: int | None
    device: str | None


def _text(cell: str) -> str | None:
    return None if cell in ("", NOT_COLLECTED) else cell


def _integer(cell: str) -> int | None:
    return None if _text(cell) is None else int(cell)


def _time(cell: str) -> float:
    value = float(cell)
    if not math.isfinite(value) or value < 0:
        raise ValueError(cell)
    return value


@dataclass(frozen=True)
class Column:
    header: str
    field: str  # Task's attribute
    parse: Callable[[str], object]  # raises ValueError on a cell it cannot read
    required: bool


COLUMNS = (
    Column("Op Name", "name", lambda cell: _text(cell) or NOT_COLLECTED, True),
    Column("Task Start Time(us)", "start_us", _time, True),
    Column("Task Duration(us)", "dur_us", _time, True),
    Column("OP Type", "op_type", _text, False),  # N/A under task_time=l0
    Column("Task Type", "task_type", _text, False),  # N/A under task_time=l0
    Column("Model ID", "model_id", _integer, False),  # absent for single operators
    Column("Infer ID", "infer_id", _integer, False),  # absent by default and for single operators
    Column("Device_id", "device", _text, False),  # only in the merged mindstudio_profiler_output copy
)


def find_op_summaries(folder: Path) -> list[Path]:
    """The op_summary CSVs of one msprof session and device: `folder` is a PROF_* folder, its parent,
    or the folder holding the CSVs."""
    folder = Path(folder)
    if not folder.is_dir():
        raise ArtifactError("not a folder: msprof writes a PROF_* folder", folder)
    for pattern in LAYOUTS:
        files = sorted(p for p in folder.glob(pattern) if p.is_file())
        holders = sorted({str(p.parent.relative_to(folder)) for p in files})
        if len(holders) > 1:
            raise ArtifactError(f"op_summary files of several msprof sessions or devices ({', '.join(holders)}); "
                                "pass the folder of one", folder)
        if files:
            return files
    raise ArtifactError("no op_summary_*.csv in it, its mindstudio_profiler_output/ or device_*/summary/ "
                        "(msprof writes them when it exports a session)", folder)


def _columns(header: list[str], path: Path) -> dict[str, int]:
    """Header name → position, for the columns read; refuses a header that lacks a required one."""
    names = [name.strip() for name in header]
    index = {}
    for column in COLUMNS:
        if names.count(column.header) > 1:
            raise ArtifactError(f"line 1: column '{column.header}' appears twice", path)
        if column.header in names:
            index[column.header] = names.index(column.header)
        elif column.required:
            why = (f" ('{UNITLESS_START}' has no unit, which CANN 6 wrote in us or ns by version: export the "
                   "session with CANN 7 or later)") if UNITLESS_START in names else ""
            raise ArtifactError(f"line 1: no '{column.header}' column{why}", path)
    return index


def _task(row: list[str], width: int, index: dict[str, int], path: Path, line: int) -> Task:
    if len(row) != width:
        raise ArtifactError(f"line {line}: {len(row)} fields, the header has {width}", path)
    values = {}
    for column in COLUMNS:
        # Stripped so N/A and names match however msprof pads a cell (it ends long numbers with a tab, which
        # keeps spreadsheets from rounding them).
        cell = row[index[column.header]].strip() if column.header in index else ""
        try:
            values[column.field] = column.parse(cell)
        except ValueError:
            what = "missing" if cell in ("", NOT_COLLECTED) else f"{brief(cell, 40)}, not a non-negative number"
            raise ArtifactError(f"line {line}: '{column.header}' is {what}", path) from None
    return Task(**values)


def _lines(raw: BinaryIO, path: Path) -> Iterator[str]:
    # Decoded a line at a time, so a byte that is not UTF-8 is reported on its own line.
    for number, line in enumerate(raw, 1):
        try:
            yield line.decode("utf-8-sig" if number == 1 else "utf-8")
        except UnicodeDecodeError:
            raise ArtifactError(f"line {number}: not UTF-8 text", path) from None


def read_op_summary(path: Path) -> list[Task]:
    """Every task row of one op_summary CSV (header by name; quoted cells; N/A; a UTF-8 BOM)."""
    path = Path(path)
    with open_regular(path, ArtifactError) as raw:
        reader = csv.reader(_lines(raw, path), strict=True)
        try:
            header = next(reader, None)
            if header is None:
                raise ArtifactError("empty: no header line", path)
            index = _columns(header, path)
            return [_task(row, len(header), index, path, reader.line_num) for row in reader
                    if any(cell.strip() for cell in row)]
        except csv.Error as exc:
            raise ArtifactError(f"line {reader.line_num}: not valid CSV ({exc})", path) from None


def read_tasks(folder: Path) -> list[Task]:
    """The tasks of one msprof session on one device, in start order."""
    tasks = [task for path in find_op_summaries(folder) for task in read_op_summary(path)]
    devices = sorted({task.device for task in tasks if task.device is not None})
    if len(devices) > 1:
        raise ArtifactError(f"tasks of devices {', '.join(devices)}: profile the decode on one device", folder)
    return sorted(tasks, key=lambda task: task.start_us)


def steps_by_execution(tasks: Sequence[Task], steps: int, source: Path) -> list[list[Task]]:
    """The last `steps` model executions, one per decode step.

    For an offline model (.om) each decode step is one execution. An execution is keyed by Model ID and
    Infer ID together: Infer ID counts the inferences of one model, so a prefill model and a decode model
    both have an inference 1. Tasks outside any model (single operators) belong to no execution.
    """
    executions: dict[tuple[int, int], list[Task]] = defaultdict(list)
    for task in tasks:
        if task.model_id is not None and task.infer_id is not None:
            executions[task.model_id, task.infer_id].append(task)
    if not executions:
        raise ArtifactError("op_summary has no Model ID and Infer ID to group tasks by model execution "
                            "(single operators, or an export that leaves Infer ID out)", source)
    if len(executions) < steps:
        raise ArtifactError(f"{len(executions)} model executions recorded, fewer than the {steps} decode steps "
                            "instrumented", source)
    last = sorted(executions.items(), key=lambda item: min(task.start_us for task in item[1]))[-steps:]
    models = sorted({model for (model, _), _ in last})
    if len(models) > 1:
        raise ArtifactError(f"the last {steps} model executions belong to models {', '.join(map(str, models))}: "
                            "a decode step that runs several models needs step windows", source)
    return [rows for _, rows in last]


def steps_by_window(tasks: Sequence[Task], windows: Sequence[tuple[float, float]]) -> list[list[Task]]:
    """The tasks starting inside each (start_us, end_us) window on msprof's clock: for runtimes that launch
    single operators, or several models per step (ONNX Runtime's CANN provider around CPU fallbacks)."""
    return [[task for task in tasks if start <= task.start_us <= end] for start, end in windows]


def _fallbacks(task_types: Sequence[dict[str, int]]) -> list[int] | None:
    if any(NOT_COLLECTED in step for step in task_types):
        return None  # an uncollected task type may be AI_CPU: the count is unknown, not zero
    return [step.get(FALLBACK_TASK_TYPE, 0) for step in task_types]


@dataclass(frozen=True)
class MsprofReport:
    ops: OpReport  # what every collector hands the profiler core
    task_types: list[dict[str, int]]  # per decode step: Task Type → tasks ("N/A" when not collected)
    task_type_s: dict[str, float]  # Task Type → device seconds over every instrumented step


def _method(grouping: str, fallbacks: list[int] | None) -> str:
    counted = f"msprof op_summary: one launch per device task in {grouping}"
    if fallbacks is None:
        return f"{counted}; task types not collected (task_time=l0), so AI_CPU fallbacks are unknown"
    return f"{counted}; AI_CPU tasks are the CPU fallbacks"


def step_report(step_tasks: Sequence[Sequence[Task]], grouping: str, source: Path) -> MsprofReport:
    """Launches, op events and task-type totals of the decode steps; `grouping` says how steps were cut."""
    steps = [sorted(tasks, key=lambda task: task.start_us) for tasks in step_tasks]
    starts = [task.start_us for tasks in steps for task in tasks]
    if not starts:
        raise ArtifactError(f"no device task in {grouping}: are the windows on msprof's clock?", source)
    origin = min(starts)  # float64 resolves 0.25 us at today's epoch microseconds: enough for a trace
    events = [OpEvent(step, task.name, task.op_type or NOT_COLLECTED, (task.start_us - origin) / 1e6,
                      task.dur_us / 1e6) for step, tasks in enumerate(steps) for task in tasks]
    task_types = [dict(Counter(task.task_type or NOT_COLLECTED for task in tasks)) for tasks in steps]
    task_type_s: dict[str, float] = defaultdict(float)
    for task in (task for tasks in steps for task in tasks):
        task_type_s[task.task_type or NOT_COLLECTED] += task.dur_us / 1e6
    fallbacks = _fallbacks(task_types)
    ops = OpReport(_method(grouping, fallbacks), [len(tasks) for tasks in steps], events, fallbacks)
    return MsprofReport(ops, task_types, dict(task_type_s))


def decode_report(folder: Path, steps: int) -> MsprofReport:
    """An offline model's last `steps` executions under `folder` (a PROF_* session) as decode steps."""
    folder = Path(folder)
    return step_report(steps_by_execution(read_tasks(folder), steps, folder), STEP_BY_EXECUTION, folder)


def windowed_report(folder: Path, windows: Sequence[tuple[float, float]]) -> MsprofReport:
    """The tasks inside each host-timed decode step window (msprof's clock, microseconds) under `folder`."""
    folder = Path(folder)
    return step_report(steps_by_window(read_tasks(folder), windows), STEP_BY_WINDOW, folder)
