"""msprof's op_summary CSVs → launches, op times and AI_CPU fallbacks per decode step, in the profile schema.

The files are written here in the column layout of Huawei's "op_summary (Operator Details)" page (CANN 8.5),
with the Device_id column msprof adds to its merged mindstudio_profiler_output copy. The session: a prefill
model (Model ID 1) runs once, then a decode model (Model ID 2) three times, each decode step 8 tasks (9 in
the third), two of them AI_CPU fallbacks (three in the third); a single operator runs between steps 1 and 2.
Every expected number below was worked out by hand from the tables.
"""

from __future__ import annotations

import csv
from pathlib import Path

import pytest

from qwdeploy.toolkit.errors import ArtifactError
from qwdeploy.toolkit.runtimes.cann import msprof
from qwdeploy.toolkit.runtimes.cann.msprof import Task

HEADER = ("Device_id", "Model Name", "Model ID", "Task ID", "Stream ID", "Infer ID", "Op Name", "OP Type", "OP State",
          "Task Type", "Task Start Time(us)", "Task Duration(us)", "Task Wait Time(us)", "Block Dim", "Mix Block Dim",
          "HF32 Eligible", "Input Shapes", "Input Data Types", "Input Formats", "Output Shapes", "Output Data Types",
          "Output Formats", "Context ID", "aicore_time(us)", "total_cycles")
# Op Name, OP Type, Task Type, Task Duration(us) in decode steps 1..3, Input Shapes, Output Shapes.
DECODE_OPS = (
    ("embed_tokens/Gather", "GatherV2", "AI_CORE", (12.5, 12.75, 12.25), "151936,1024;1,1", "1,1,1024"),
    ("layers.0/input_layernorm/RmsNorm", "RmsNorm", "AI_VECTOR_CORE", (6.25, 6.5, 6.0), "1,1,1024;1024", "1,1,1024"),
    ("layers.0/self_attn/q_proj/MatMul", "MatMulV2", "AI_CORE", (40.0, 41.5, 39.5), "1,1024;1024,2048", "1,2048"),
    ("layers.0/self_attn/Trilu", "Trilu", "AI_CPU", (30.0, 28.0, 29.0), "1,1,1,1025", "1,1,1,1025"),
    ("layers.0/self_attn/ScatterNd", "ScatterNd", "AI_CPU", (18.5, 19.0, 18.75), "28,2,1,8,1024,128;1,4;1,8,128",
     "28,2,1,8,1024,128"),
    ("layers.0/mlp/down_proj/MatMul", "MatMulV3", "MIX_AIC", (55.0, 54.5, 56.0), "1,3072;3072,1024", "1,1024"),
    ("layers.0/AllReduce", "hcom_allReduce_", "HCCL", (22.0, 21.0, 23.0), "1,1,1024", "1,1,1024"),
    ("lm_head/MatMul", "MatMulV2", "AI_CORE", (80.0, 81.25, 79.5), "1,1024;1024,151936", "1,151936"),
)
STEP3_CAST = ("logits/Cast", "Cast", "AI_CPU", 7.5, "1,151936", "1,151936")  # a fallback only step 3 runs
BASE_US = 1765432100000000.0  # msprof's clock: host wall time in microseconds
WAIT_US, GAP_US = 2.5, 1500.0  # between tasks of an execution; between executions (the host picks the token)
DECODE_ORIGIN_US = BASE_US + 3631.5  # prefill: 8 x 264.25 us of tasks + 7 waits = 2131.5, then a gap
STEP_SPANS_US = ((0.0, 281.75), (1781.75, 2063.75), (3563.75, 3855.25))  # first start, last end; from the origin
SINGLE_OP_US = 1681.75  # a Cast launched outside any model, 100 us before decode step 2


def _cells(model: tuple[str, str, str], task_id: int, op: tuple, start_us: float, dur_us: float) -> dict:
    name, op_type, task_type, _, inputs, outputs = op
    hccl, fallback = task_type == "HCCL", task_type == "AI_CPU"
    model_name, model_id, infer_id = model
    return {
        "Device_id": "0", "Model Name": model_name, "Model ID": model_id, "Infer ID": infer_id,
        "Task ID": "N/A" if hccl else str(task_id), "Stream ID": "N/A" if hccl else "3", "Op Name": name,
        "OP Type": op_type, "OP State": "static" if not hccl else "N/A", "Task Type": task_type,
        # msprof pads long numbers with a tab so spreadsheets keep every digit.
        "Task Start Time(us)": f"{start_us:.3f}\t", "Task Duration(us)": f"{dur_us:.3f}",
        "Task Wait Time(us)": f"{WAIT_US:.3f}\t", "Block Dim": "0" if fallback or hccl else "20",
        "Mix Block Dim": "40" if task_type == "MIX_AIC" else "N/A", "HF32 Eligible": "NO",
        "Input Shapes": inputs, "Input Data Types": "FLOAT16", "Input Formats": "ND", "Output Shapes": outputs,
        "Output Data Types": "FLOAT16", "Output Formats": "ND", "Context ID": "N/A",
        "aicore_time(us)": "N/A" if fallback or hccl else f"{dur_us * 0.8:.3f}",
        "total_cycles": "N/A" if fallback or hccl else str(int(dur_us * 1800)),
    }


def _execution(model: tuple[str, str, str], ops: list[tuple], durations: list[float], start_us: float):
    """Rows of one model execution, tasks back to back; returns them and when the last one ends."""
    rows, clock = [], start_us
    for task_id, (op, dur) in enumerate(zip(ops, durations), start=10):
        rows.append(_cells(model, task_id, op, clock, dur))
        clock += dur + WAIT_US
    return rows, clock - WAIT_US


def _session_rows() -> list[dict]:
    prefill, end = _execution(("qwen3_prefill", "1", "1"), list(DECODE_OPS), [op[3][0] * 8 for op in DECODE_OPS],
                              BASE_US)
    rows = list(prefill)
    for step in range(3):
        ops = list(DECODE_OPS) + ([STEP3_CAST] if step == 2 else [])
        durations = [op[3][step] for op in DECODE_OPS] + ([STEP3_CAST[3]] if step == 2 else [])
        if step == 1:
            single = ("N/A", "N/A", "N/A")
            rows.append(_cells(single, 90, ("host/Cast", "Cast", "AI_VECTOR_CORE", None, "1,1", "1,1"),
                               DECODE_ORIGIN_US + SINGLE_OP_US, 5.0))
        decode, end = _execution(("qwen3_decode", "2", str(step + 1)), ops, durations, end + GAP_US)
        rows += decode
    return rows


def _write(path: Path, rows: list[dict], header: tuple[str, ...] = HEADER) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f)  # quotes the shapes, whose dimensions are commas
        writer.writerow(header)
        writer.writerows([row.get(column, "N/A") for column in header] for row in rows)
    return path


@pytest.fixture
def session(tmp_path: Path) -> Path:
    """A CANN 8 PROF_* folder whose op_summary is sliced in two, rows out of start order."""
    prof = tmp_path / "PROF_000001_20251211064820123_LKQBEMNFCGJOPQRS"
    rows = _session_rows()
    output = prof / "mindstudio_profiler_output"
    _write(output / "op_summary_slice_0_20251211064825.csv", rows[:20][::-1])
    _write(output / "op_summary_slice_1_20251211064825.csv", rows[20:])
    (prof / "device_0" / "data").mkdir(parents=True)
    return prof


def test_decode_steps_are_the_decode_models_last_executions(session):
    report = msprof.decode_report(session, steps=3)
    assert report.ops.launches_per_step == [8, 8, 9]
    assert report.ops.fallbacks_per_step == [2, 2, 3]
    assert report.task_types == [{"AI_CORE": 3, "AI_VECTOR_CORE": 1, "AI_CPU": 2, "MIX_AIC": 1, "HCCL": 1}] * 2 + [
        {"AI_CORE": 3, "AI_VECTOR_CORE": 1, "AI_CPU": 3, "MIX_AIC": 1, "HCCL": 1}]
    expected_us = {"AI_CORE": 399.25, "AI_VECTOR_CORE": 18.75, "AI_CPU": 150.75, "MIX_AIC": 165.5, "HCCL": 66.0}
    assert report.task_type_s == pytest.approx({k: v / 1e6 for k, v in expected_us.items()})
    assert report.ops.method.endswith("(Model ID, Infer ID); AI_CPU tasks are the CPU fallbacks")
    events = report.ops.events
    assert [e.step for e in events] == [0] * 8 + [1] * 8 + [2] * 9
    assert events[0].name == "embed_tokens/Gather" and events[0].start_s == 0.0
    starts = [e.start_s for e in events if e.name == "embed_tokens/Gather"]
    assert starts == pytest.approx([span[0] / 1e6 for span in STEP_SPANS_US])
    assert (events[-1].name, events[-1].op, events[-1].dur_s) == ("logits/Cast", "Cast", pytest.approx(7.5e-6))
    assert events[-1].start_s + events[-1].dur_s == pytest.approx(STEP_SPANS_US[2][1] / 1e6)
    assert "host/Cast" not in {e.name for e in events}  # outside any model execution


def test_step_windows_count_every_task_inside_including_single_operators(session):
    windows = [(DECODE_ORIGIN_US + start - 200.0, DECODE_ORIGIN_US + end) for start, end in STEP_SPANS_US]
    report = msprof.windowed_report(session, windows)
    assert report.ops.launches_per_step == [8, 9, 9]
    assert report.ops.fallbacks_per_step == [2, 2, 3]  # the single operator ran on the vector core
    assert report.task_type_s["AI_VECTOR_CORE"] == pytest.approx((18.75 + 5.0) / 1e6)
    host_cast = [e for e in report.ops.events if e.name == "host/Cast"]
    assert [(e.step, e.start_s) for e in host_cast] == [(1, pytest.approx(SINGLE_OP_US / 1e6))]
    assert "host-timed window" in report.ops.method


def test_windows_that_miss_every_task_are_refused(session):
    with pytest.raises(ArtifactError, match="no device task in each decode step's host-timed window: are the "
                                            "windows on msprof's clock"):
        msprof.windowed_report(session, [(1.0, 2.0), (3.0, 4.0)])


@pytest.mark.parametrize(("steps", "message"), [
    (4, "the last 4 model executions belong to models 1, 2: a decode step that runs several models needs step "
        "windows"),
    (5, "4 model executions recorded, fewer than the 5 decode steps instrumented"),
])
def test_executions_that_are_not_decode_steps_are_refused(session, steps, message):
    with pytest.raises(ArtifactError) as error:
        msprof.decode_report(session, steps=steps)
    assert str(error.value) == f"{session}: {message}"


def test_the_report_profiles_into_a_schema_valid_document(session):
    from qwdeploy.toolkit.profiler.contract import ArtifactInfo, RunSample
    from qwdeploy.toolkit.profiler.document import Host, build_document
    from qwdeploy.toolkit.profiler.outputs.table import op_rows
    from qwdeploy.toolkit.profiler.outputs.trace import trace_events
    from qwdeploy.toolkit.profiler.runner import Measurement, Settings
    from qwdeploy.toolkit.profiler.schema import profile_schema, schema_errors, validate
    from qwdeploy.toolkit.profiler.sweeps import Budget
    from qwdeploy.toolkit.profiler.worker import Job

    settings = Settings(prompt_len=8, gen=4, runs=1, instrument_steps=3)
    info = ArtifactInfo("CANN 8.0.RC3 (acl, Ascend910B1)", weight_bytes=1_192_000_000,
                        weight_bytes_read_per_token=881_000_000, kv_bytes_per_token=114_688, context_length=1024,
                        vocab_size=151_936, details={"soc": "Ascend910B1"})
    sample = RunSample(batch=1, prompt_len=8, ttft_s=0.0213, step_s=[0.00451, 0.00447, 0.00462])
    report = msprof.decode_report(session, steps=settings.instrument_steps).ops
    m = Measurement(Job(session / "qwen3-0.6b", "onnx", "cann"), info, 310_000_000, 2_150_000_000,
                    2_420_000_000, samples=[sample], report=report)
    doc = build_document(m, settings, Host("atlas-800", "aarch64", 192, 1536 * 2**30, None),
                         Budget(64 * 2**30, "profile ascend-910b"), None)
    validate(doc)
    assert schema_errors(doc, profile_schema()) == []
    assert doc["launches"]["per_step"] == [8, 8, 9] and doc["launches"]["per_decode_step"] == 8
    assert doc["launches"]["fallbacks_per_step"] == [2, 2, 3]
    from qwdeploy.toolkit.profiler.outputs.table import summary_rows

    assert ("CPU fallbacks / decode step", "2") in summary_rows(doc)
    assert [(r["op"], r["count"]) for r in doc["ops"]] == [
        ("MatMulV2", 6), ("MatMulV3", 3), ("Trilu", 3), ("hcom_allReduce_", 3), ("ScatterNd", 3),
        ("GatherV2", 3), ("RmsNorm", 3), ("Cast", 1)]
    matmul = doc["ops"][0]
    assert matmul["count_per_step"] == 2.0
    assert matmul["total_s"] == pytest.approx(361.75e-6)
    assert matmul["share"] == pytest.approx(361.75 / 800.25)
    assert op_rows(doc)[0] == ("MatMulV2", "2", "0.36 ms", "45.2%")
    spans = [e for e in trace_events([m])["traceEvents"] if e["ph"] == "X" and e["name"] not in ("prefill", "decode")]
    assert len(spans) == 25 and all(e["ts"] >= 0 and e["dur"] > 0 for e in spans)


L0_FILE = (  # task_time=l0: no op or task types, no PMU columns, Block Dim 0
    "Device_id,Model Name,Model ID,Task ID,Stream ID,Infer ID,Op Name,OP Type,Task Type,Task Start Time(us),"
    "Task Duration(us),Task Wait Time(us),Block Dim,Mix Block Dim,Input Shapes,Input Data Types,Input Formats,"
    "Output Shapes,Output Data Types,Output Formats\n"
    "0,qwen3,1,2,3,1,embed/Gather,N/A,N/A,1765432100000000.000\t,98.500,0.000\t,0,N/A,N/A,N/A,N/A,N/A,N/A,N/A\n"
    "0,qwen3,1,3,3,1,lm_head/MatMul,N/A,N/A,1765432100000101.000\t,310.250,2.500\t,0,N/A,N/A,N/A,N/A,N/A,N/A,N/A\n"
    "0,qwen3,1,2,3,2,embed/Gather,N/A,N/A,1765432100002000.000\t,14.250,1588.750\t,0,N/A,N/A,N/A,N/A,N/A,N/A,N/A\n"
    "0,qwen3,1,3,3,2,lm_head/MatMul,N/A,N/A,1765432100002016.750\t,45.500,2.500\t,0,N/A,N/A,N/A,N/A,N/A,N/A,N/A\n"
    "0,qwen3,1,4,3,2,ArgMax,N/A,N/A,1765432100002064.750\t,9.750,2.500\t,0,N/A,N/A,N/A,N/A,N/A,N/A,N/A\n"
    "0,qwen3,1,2,3,3,embed/Gather,N/A,N/A,1765432100003600.000\t,14.000,1525.500\t,0,N/A,N/A,N/A,N/A,N/A,N/A,N/A\n"
    "0,qwen3,1,3,3,3,lm_head/MatMul,N/A,N/A,1765432100003616.500\t,46.000,2.500\t,0,N/A,N/A,N/A,N/A,N/A,N/A,N/A\n"
    "0,qwen3,1,4,3,3,ArgMax,N/A,N/A,1765432100003665.000\t,10.250,2.500\t,0,N/A,N/A,N/A,N/A,N/A,N/A,N/A\n"
)


def test_task_time_l0_counts_launches_but_leaves_fallbacks_unknown(tmp_path):
    _text_file(tmp_path / "PROF_1" / "mindstudio_profiler_output" / "op_summary_20251211.csv", L0_FILE)
    report = msprof.decode_report(tmp_path / "PROF_1", steps=2)
    assert report.ops.launches_per_step == [3, 3]
    assert report.ops.fallbacks_per_step is None  # not zero: any of them may have run on the AI CPU
    assert report.task_types == [{"N/A": 3}, {"N/A": 3}]
    assert report.task_type_s == {"N/A": pytest.approx(139.75e-6)}
    assert {e.op for e in report.ops.events} == {"N/A"}
    assert [e.name for e in report.ops.events] == ["embed/Gather", "lm_head/MatMul", "ArgMax"] * 2
    assert [e.start_s for e in report.ops.events][3] == pytest.approx(1600e-6)
    assert report.ops.method.endswith("task types not collected (task_time=l0), so AI_CPU fallbacks are unknown")


def _text_file(path: Path, text: str, encoding: str = "utf-8") -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(text.encode(encoding))
    return path


def test_columns_are_read_by_name_whatever_their_order_bom_quotes_and_line_ends(tmp_path):
    """Reordered columns, optional ones missing (Model Name, Device_id, PMU), unknown ones (a later CANN's
    Block Num), a BOM, CRLF, padded numbers, quoted shapes and a trailing blank line."""
    text = ("\ufeffOp Name,Input Shapes,Task Type,Block Num,Task Duration(us),OP Type,Infer ID,"
            "Task Start Time(us),Model ID,Output Shapes\r\n"
            'layers.3/mlp/gate_up/MatMul,"1,1024;1024,6144",MIX_AIC,20,61.125,MatMulV3,7,1765432100000042.500\t,'
            '2,"1,6144"\r\n'
            'layers.3/Cast, ,AI_CPU,0, 4.000 ,Cast,7,1765432100000010.250\t,2,"1,6144"\r\n'
            " \r\n")
    path = _text_file(tmp_path / "op_summary_0_2_7.csv", text)
    assert msprof.read_op_summary(path) == [
        Task("layers.3/mlp/gate_up/MatMul", 1765432100000042.5, 61.125, "MatMulV3", "MIX_AIC", 2, 7, None),
        Task("layers.3/Cast", 1765432100000010.25, 4.0, "Cast", "AI_CPU", 2, 7, None),
    ]
    assert msprof.find_op_summaries(tmp_path) == [path]


def test_cann6_per_device_summaries_are_found_and_cann8s_merged_copy_wins(tmp_path):
    rows = _session_rows()
    legacy = tmp_path / "PROF_cann6"
    found = _write(legacy / "device_0" / "summary" / "op_summary_0_2_1.csv", rows, HEADER[1:])
    assert msprof.find_op_summaries(legacy) == [found]
    assert msprof.decode_report(legacy, steps=3).ops.launches_per_step == [8, 8, 9]
    both = tmp_path / "PROF_cann8"
    _write(both / "device_0" / "summary" / "op_summary_0_2_1.csv", rows, HEADER[1:])
    merged = _write(both / "mindstudio_profiler_output" / "op_summary_20251211.csv", rows)
    assert msprof.find_op_summaries(both) == [merged]


def test_a_folder_with_several_sessions_or_none_is_refused(tmp_path, session):
    other = tmp_path / "PROF_000002_20251211070000000_ABCDEFGHIJKLMNOP" / "mindstudio_profiler_output"
    _write(other / "op_summary_20251211070005.csv", _session_rows())
    with pytest.raises(ArtifactError, match=r"op_summary files of several msprof sessions or devices \(PROF_000001_"
                                            r"\w+/mindstudio_profiler_output, PROF_000002_\w+/mindstudio_profiler_"
                                            r"output\); pass the folder of one"):
        msprof.find_op_summaries(tmp_path)
    (tmp_path / "PROF_empty" / "device_0" / "data").mkdir(parents=True)
    with pytest.raises(ArtifactError, match=r"PROF_empty: no op_summary_\*\.csv in it, its mindstudio_profiler_"
                                            r"output/ or device_\*/summary/"):
        msprof.find_op_summaries(tmp_path / "PROF_empty")


def test_tasks_of_two_devices_or_without_infer_ids_are_refused(tmp_path):
    rows = _session_rows()
    two = tmp_path / "two"
    _write(two / "op_summary_1.csv", rows + [dict(rows[-1], **{"Device_id": "1"})])
    with pytest.raises(ArtifactError, match="tasks of devices 0, 1: profile the decode on one device"):
        msprof.read_tasks(two)
    single = tmp_path / "single"
    _write(single / "op_summary_1.csv", rows, tuple(c for c in HEADER if c not in ("Model Name", "Infer ID")))
    with pytest.raises(ArtifactError, match="has no Model ID and Infer ID to group tasks by model execution"):
        msprof.decode_report(single, steps=3)


GOOD_ROW = "0,qwen3,1,5,3,2,lm_head/MatMul,MatMulV2,AI_CORE,1765432100002016.750\t,45.500,2.500\t,20"
SHORT_HEADER = ("Device_id,Model Name,Model ID,Task ID,Stream ID,Infer ID,Op Name,OP Type,Task Type,"
                "Task Start Time(us),Task Duration(us),Task Wait Time(us),Block Dim\n")


@pytest.mark.parametrize(("text", "message"), [
    (SHORT_HEADER + GOOD_ROW + "\n" + GOOD_ROW.replace("45.500", "4S.500") + "\n",
     "line 3: 'Task Duration(us)' is '4S.500', not a non-negative number"),
    (SHORT_HEADER + GOOD_ROW.replace("45.500", "-45.500") + "\n",
     "line 2: 'Task Duration(us)' is '-45.500', not a non-negative number"),
    (SHORT_HEADER + GOOD_ROW.replace("1765432100002016.750\t", "N/A") + "\n",
     "line 2: 'Task Start Time(us)' is missing"),
    (SHORT_HEADER + GOOD_ROW + "\n" + GOOD_ROW + ",N/A\n", "line 3: 14 fields, the header has 13"),
    (SHORT_HEADER + GOOD_ROW.replace("lm_head/MatMul", '"lm_head"/MatMul') + "\n",
     "line 2: not valid CSV (',' expected after '\"')"),
    (SHORT_HEADER.replace("Task Duration(us),", "") + GOOD_ROW.replace(",45.500", "") + "\n",
     "line 1: no 'Task Duration(us)' column"),
    (SHORT_HEADER.replace("Task Start Time(us)", "Task Start Time") + GOOD_ROW + "\n",
     "line 1: no 'Task Start Time(us)' column ('Task Start Time' has no unit, which CANN 6 wrote in us or ns by "
     "version: export the session with CANN 7 or later)"),
    (SHORT_HEADER.replace("Infer ID,", "Infer ID,Infer ID,") + GOOD_ROW + "\n",
     "line 1: column 'Infer ID' appears twice"),
    ("", "empty: no header line"),
])
def test_a_malformed_file_is_one_line_naming_file_and_line(tmp_path, text, message):
    path = _text_file(tmp_path / "op_summary_20251211.csv", text)
    with pytest.raises(ArtifactError) as error:
        msprof.read_op_summary(path)
    assert str(error.value) == f"{path}: {message}"
    assert "\n" not in str(error.value)


def test_a_byte_that_is_not_utf8_is_reported_on_its_line(tmp_path):
    text = SHORT_HEADER + GOOD_ROW + "\n" + GOOD_ROW.replace("lm_head", "lm_héad") + "\n"
    path = _text_file(tmp_path / "op_summary_20251211.csv", text, encoding="latin-1")
    with pytest.raises(ArtifactError) as error:
        msprof.read_op_summary(path)
    assert str(error.value) == f"{path}: line 3: not UTF-8 text"
