"""Nothing stale: every pipeline stage declares the code it executes and the params.yaml keys it reads.

The code a stage executes is found statically: the imports of ``harness/__main__.py`` at module level and inside the
stage's command function, followed through every module of ``cube`` and ``harness`` they reach (imports inside
functions included, so this over-approximates what runs). ``cube/config.py`` holds the defaults of keys params.yaml
leaves out, so a stage that reads its settings executes it and lists it like any other code.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("cube", "harness")


def module_file(name: str) -> Path | None:
    parts = name.split(".")
    if parts[0] not in PACKAGES:
        return None
    for candidate in (ROOT.joinpath(*parts).with_suffix(".py"), ROOT.joinpath(*parts, "__init__.py")):
        if candidate.exists():
            return candidate
    return None


def imported_names(node: ast.AST, package: str) -> set[str]:
    names = set()
    for child in ast.walk(node):
        if isinstance(child, ast.Import):
            names |= {alias.name for alias in child.names}
        elif isinstance(child, ast.ImportFrom):
            base = child.module or ""
            if child.level:  # relative: from . import x
                base = ".".join(package.split(".")[: len(package.split(".")) - child.level + 1] + ([base] if base else []))
            names.add(base)
            names |= {f"{base}.{alias.name}" for alias in child.names}  # "from cube import atomic" imports a module
    return names


def closure(start: set[str]) -> set[str]:
    """Repository files of every cube/harness module reachable from ``start`` (module names)."""
    seen: set[Path] = set()
    todo = list(start)
    while todo:
        name = todo.pop()
        path = module_file(name)
        if path is None or path in seen:
            continue
        seen.add(path)
        parent = name.split(".")[0]
        todo += [n for n in imported_names(ast.parse(path.read_text(encoding="utf-8")), name) if n.split(".")[0] == parent
                 or n.split(".")[0] in PACKAGES]
        todo.append(parent)  # importing cube.x runs cube/__init__.py
    return {str(p.relative_to(ROOT)) for p in seen}


def executed_by(command: str) -> set[str]:
    """Files a `python -m harness <command>` process may execute."""
    main = ast.parse((ROOT / "harness/__main__.py").read_text(encoding="utf-8"))
    top = set()
    for node in main.body:
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            top |= imported_names(node, "harness.__main__")
    function = next(n for n in main.body if isinstance(n, ast.FunctionDef) and n.name == f"cmd_{command}")
    return closure(top | imported_names(function, "harness.__main__")) | {"harness/__main__.py"}


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


def declared(stage: dict) -> set[str]:
    return {d.rstrip("/") for d in stage.get("deps", [])}


def covered(path: str, deps: set[str]) -> bool:
    return any(path == d or path.startswith(d + "/") for d in deps)


@pytest.mark.parametrize(("name", "stage"), stages(), ids=[name for name, _ in stages()])
def test_every_stage_declares_the_code_it_executes(name, stage):
    command = stage["cmd"].split()
    assert command[:3] == ["python", "-m", "harness"], stage["cmd"]
    missing = sorted(path for path in executed_by(command[3]) if not covered(path, declared(stage)))
    assert not missing, f"stage {name} runs {missing} but does not list them under deps in dvc.yaml"


@pytest.mark.parametrize(("name", "stage"), stages(), ids=[name for name, _ in stages()])
def test_every_stage_declares_its_settings_in_params_yaml_only(name, stage):
    """One params file, so `dvc params diff` and `dvc exp show` list each setting once."""
    files = {next(iter(entry)) if isinstance(entry, dict) else "params.yaml" for entry in stage.get("params", [])}
    assert files <= {"params.yaml"}, files


def test_the_analysis_sees_lazy_imports():
    assert "harness/report.py" in executed_by("report") and "harness/report.py" not in executed_by("datasets")
    assert "cube/trainer.py" in executed_by("train") and "cube/baselines.py" in executed_by("evaluate")
