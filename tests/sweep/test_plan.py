"""Plans load strictly (one line naming the file and the key), the rule picks as it says, and --ray without Ray
says how to install it. Nothing here exports or measures."""

from __future__ import annotations

import sys

import pytest
from click.testing import CliRunner

from qwdeploy.toolkit.cli.main import cli
from qwdeploy.toolkit.sweep.choose import choose, pareto
from qwdeploy.toolkit.sweep.plan import EvalSettings, Rule, load_plan
from qwdeploy.toolkit.sweep.results import CellResult, Fit, Quality, Speed, Where

from sweep_cases import ARCHS, write_plan


@pytest.fixture
def plan(checkpoints, tmp_path):
    return write_plan(tmp_path, {arch: checkpoints / arch for arch in ARCHS})


def test_a_plan_loads_into_typed_settings(plan, checkpoints):
    loaded = load_plan(plan)
    assert loaded.checkpoints == {arch: checkpoints / arch for arch in ARCHS}
    assert loaded.export == {"gguf": ("f16", "q8_0", "q4_0")}
    assert [p.name for p in loaded.targets] == ["rpi5", "x86-server", "tiny-board"]
    assert loaded.eval == EvalSettings(("perplexity", "agreement"), 32, None)
    assert loaded.choose == Rule("decode_tokens_per_s", max_ppl_ratio=1.05)


@pytest.mark.parametrize("old, new, message", [
    ("targets =", "colour = 1\ntargets =", "unknown key 'colour'; known: targets, checkpoints, export"),
    ("positions = 32", "positons = 32", "[eval] has unknown key 'positons'; known: metrics, positions, text"),
    ("positions = 32", "positions = 1", "[eval] 'positions' must be from 2 to 1e+06, got 1"),
    ('gguf = ["f16"', 'gguf = ["f17"', "[export] 'gguf' has unknown type 'f17'; allowed: f32, f16"),
    ('"perplexity", "agreement"', '"agreement"', "[choose] 'max_ppl_ratio' needs 'perplexity' in [eval] metrics"),
    ('by = "decode_tokens_per_s"', 'by = "vibes"', "[choose] 'by' has unknown value 'vibes'; allowed: decode_tok"),
    ('"x86-server"', '"x86-server", "rpi5"', "'targets' names the profile 'rpi5' twice"),
    ("[checkpoints]", "[checkpoints]\nghost = \"no/such/folder\"", "[checkpoints] 'ghost': no such folder"),
    ("runs = 1", "runs = true", "[profile] 'runs' must be an integer, got True"),
])
def test_a_wrong_plan_is_one_line_naming_the_file_and_the_key(plan, old, new, message):
    plan.write_text(plan.read_text().replace(old, new, 1))
    result = CliRunner().invoke(cli, ["sweep", str(plan)])
    assert result.exit_code == 1
    assert result.output.count("\n") == 1 and f"error: {plan}: " in result.output
    assert message in result.output


def test_ray_missing_says_how_to_install_it(plan, tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "ray", None)  # `import ray` raises ImportError
    result = CliRunner().invoke(cli, ["sweep", str(plan), "--out", str(tmp_path / "out"), "--ray", "auto"])
    assert result.exit_code == 3
    assert result.output == "error: --ray needs Ray, which is not installed: pip install 'qwdeploy[ray]'\n"


def _cell(name: str, decode: float, ratio: float, fits: bool = True, status: str = "done") -> CellResult:
    where = Where("local", "host", "cpu", True)
    return CellResult(f"m/gguf-{name}/board", "m", "gguf", name, "board", status, None, "key",
                      fit=Fit(1, 2, fits), quality=Quality(8, ratio, 1.0, ratio, 0.0, 1.0, where),
                      speed=Speed(0.1, 100.0, decode, 1, None, where))


def test_the_rule_takes_the_best_that_fits_and_meets_every_limit():
    cells = [_cell("fast-but-far", 90, 1.2), _cell("too-big", 80, 1.0, fits=False), _cell("failed", 70, 1.0,
             status="failed"), _cell("chosen", 50, 1.01), _cell("slow", 10, 1.0)]
    (choice,) = choose(cells, ["board"], Rule("decode_tokens_per_s", max_ppl_ratio=1.05))
    assert choice.cell == "m/gguf-chosen/board"
    (closest,) = choose(cells, ["board"], Rule("ppl_ratio"))
    assert closest.cell == "m/gguf-slow/board"
    (none,) = choose(cells, ["board"], Rule(max_ppl_ratio=0.5))
    assert none.cell is None and "meets the rule" in none.why


def test_the_pareto_front_keeps_only_points_nothing_beats_on_both_speed_and_loss():
    points = [(10, 1.0), (50, 1.01), (40, 1.02), (90, 1.2), (90, 1.3), (10, 1.0)]
    assert pareto(points) == [0, 5, 1, 3]


def test_an_out_folder_that_holds_something_else_is_refused(plan, tmp_path):
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "notes.txt").write_text("not a sweep")
    result = CliRunner().invoke(cli, ["sweep", str(plan), "--out", str(tmp_path / "mine")])
    assert result.exit_code == 1 and result.output.count("\n") == 1
    assert "holds no earlier sweep (no state/ folder)" in result.output
    assert (tmp_path / "mine" / "notes.txt").read_text() == "not a sweep"
