"""Nothing stale: every pipeline stage lists exactly the code it executes, and the params.yaml keys it reads.

The lists are written by ``python -m harness code-deps --write`` from a static import analysis
(``harness/workflows/code_deps.py``); this checks them both ways, so a module a stage stops importing leaves its
list too.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from harness.workflows.code_deps import _yaml, differences, executed_by, import_cycles, write

ROOT = Path(__file__).resolve().parent.parent


def stages() -> list[tuple[str, dict]]:
    """(name, stage) for every stage of dvc.yaml, foreach stages expanded."""
    found = []
    for name, stage in yaml.safe_load((ROOT / "dvc.yaml").read_text(encoding="utf-8"))["stages"].items():
        if "foreach" in stage:
            for key, item in stage["foreach"].items():
                text = yaml.safe_dump(stage["do"]).replace("${key}", key).replace("${item}", item)
                found.append((f"{name}@{key}", yaml.safe_load(text)))
        else:
            found.append((name, stage))
    return found


def test_every_stage_lists_exactly_the_code_it_executes():
    found = differences(_yaml().load((ROOT / "dvc.yaml").read_text(encoding="utf-8")))
    assert not found, "\n".join(found) + "\nfix: python -m harness code-deps --write"


def test_a_module_added_or_dropped_shows_as_a_difference_and_write_fixes_it(tmp_path):
    """Both ways: a list that lacks a module the stage imports, or names one it no longer imports, is caught."""
    for folder in ("cube", "harness"):
        shutil.copytree(ROOT / folder, tmp_path / folder, ignore=shutil.ignore_patterns("__pycache__"))
    dvc_yaml = tmp_path / "dvc.yaml"
    shutil.copy(ROOT / "dvc.yaml", dvc_yaml)
    (tmp_path / "harness/render/extra.py").write_text("from cube import digest\n", encoding="utf-8")
    report = tmp_path / "harness/render/report.py"
    report.write_text("from harness.render import extra\n" + report.read_text(encoding="utf-8"), encoding="utf-8")
    text = dvc_yaml.read_text(encoding="utf-8")
    dvc_yaml.write_text(text.replace("      - harness/render/plots.py\n", "      - harness/render/plots.py\n"
                                     "      - harness/render/plots_page.py\n"), encoding="utf-8")
    found = differences(_yaml().load(dvc_yaml.read_text(encoding="utf-8")), tmp_path)
    assert found == ["stage report: missing ['harness/render/extra.py']; "
                     "listed but not executed ['harness/render/plots_page.py']"]
    assert write(dvc_yaml, tmp_path) == 1
    assert differences(_yaml().load(dvc_yaml.read_text(encoding="utf-8")), tmp_path) == []
    assert dvc_yaml.read_text(encoding="utf-8").count("#") == text.count("#")  # the comments stay


def test_the_check_command_fails_on_a_stale_list(tmp_path):
    stale = tmp_path / "dvc.yaml"
    stale.write_text((ROOT / "dvc.yaml").read_text(encoding="utf-8").replace("      - harness/stages/bench.py\n", "", 1),
                     encoding="utf-8")
    result = subprocess.run([sys.executable, "-m", "harness", "code-deps", "--dvc-yaml", str(stale)], cwd=ROOT,
                            capture_output=True, text=True, check=False)
    assert result.returncode == 1 and "stage bench: missing ['harness/stages/bench.py']" in result.stderr


@pytest.mark.parametrize(("name", "stage"), stages(), ids=[name for name, _ in stages()])
def test_every_stage_declares_its_settings_in_params_yaml_only(name, stage):
    """One params file, so `dvc params diff` and `dvc exp show` list each setting once."""
    files = {next(iter(entry)) if isinstance(entry, dict) else "params.yaml" for entry in stage.get("params", [])}
    assert files <= {"params.yaml"}, files


def test_the_analysis_sees_lazy_imports():
    assert "harness/render/report.py" in executed_by("report")
    assert "harness/render/report.py" not in executed_by("datasets")
    assert "cube/trainer.py" in executed_by("train") and "cube/baselines.py" in executed_by("evaluate")


def test_no_module_imports_itself_round_a_cycle_and_a_planted_cycle_is_found(tmp_path):
    assert import_cycles() == []
    for folder in ("cube", "harness"):
        shutil.copytree(ROOT / folder, tmp_path / folder, ignore=shutil.ignore_patterns("__pycache__"))
    phases = tmp_path / "harness/measure/phases.py"
    phases.write_text(phases.read_text(encoding="utf-8") + "\n\ndef late():\n    from harness.stages import bench\n",
                      encoding="utf-8")
    assert any({"harness/measure/phases.py", "harness/stages/bench.py"} <= set(cycle) for cycle in import_cycles(tmp_path))


def test_the_report_stage_runs_no_training_embedding_or_evaluation_code():
    report = executed_by("report")
    assert "harness/render/report.md.j2" in report
    assert not {"cube/trainer.py", "cube/teachers.py", "cube/embedded.py", "cube/baselines.py"} & report
    runner = {"harness/stages/__init__.py", "harness/stages/__main__.py"}  # the process entry of every stage
    assert not [path for path in report - runner if path.startswith("harness/stages/")]


def test_every_c_source_is_listed_with_the_module_that_compiles_it_and_stages_running_it_depend_on_it():
    from harness.workflows.code_deps import COMPILED

    sources = {path.relative_to(ROOT).as_posix() for package in ("cube", "harness") for path in (ROOT / package).rglob("*.c")}
    listed = {source for compiled in COMPILED.values() for source in compiled}
    assert sources == listed, "a C source no module is listed as compiling: add it to code_deps.COMPILED"
    assert "cube/kernels/cell_rule.c" in executed_by("evaluate")


def test_no_stage_executes_the_command_line_interface():
    """A stage's process is ``python -m harness.stages``: the CLI's help strings and tools are no stage's code, so
    editing them re-runs nothing."""
    for name, stage in stages():
        command = stage["cmd"].split()
        assert command[:3] == ["python", "-m", "harness.stages"], name
        code = executed_by(command[3])
        assert "harness/__main__.py" not in code and "harness/stages/__main__.py" in code, name
        assert not any(path.startswith("harness/workflows/") for path in code), name


def test_the_command_line_lists_exactly_the_stages_the_runner_runs():
    from harness import __main__ as cli
    from harness.stages import __main__ as runner

    assert list(cli.STAGES) == list(runner.STAGES)
