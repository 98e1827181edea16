"""Each dvc.yaml stage's code dependencies, found from the imports and written into dvc.yaml.

The code a stage executes is found statically: the imports of the stage runner ``harness/stages/__main__.py`` at
module level and inside the stage's function (``stage_<name>``), followed through every module of ``cube`` and
``harness`` they reach (imports inside functions included, so this over-approximates what runs), the templates those
modules render (``report.md.j2`` beside ``report.py``) and the C sources they compile (``COMPILED``).
``cube/config.py`` holds the defaults of keys params.yaml leaves out, so a stage that reads its settings executes it
and lists it like any other code. A stage that depends on a whole package folder (the reliability drills) is left as it is.

    python -m harness code-deps           # exit 1 naming the differences when a list is not exact, or an import cycle
    python -m harness code-deps --write   # rewrite the lists (comments and everything else kept)
"""

from __future__ import annotations

import argparse
import ast
import io
import sys
from pathlib import Path

from cube import atomic
from harness import paths

PACKAGES = ("cube", "harness")
COMPILED = {"cube/cpu_kernel.py": ("cube/kernels/cell_rule.c",)}  # module -> the C sources it builds and runs


def module_file(name: str, root: Path = paths.REPO) -> Path | None:
    parts = name.split(".")
    if parts[0] not in PACKAGES:
        return None
    for candidate in (root.joinpath(*parts).with_suffix(".py"), root.joinpath(*parts, "__init__.py")):
        if candidate.exists():
            return candidate
    return None


def imported_names(node: ast.AST, module: str, is_package: bool = False) -> set[str]:
    """Every module name ``node`` imports (``from a import b`` counts a.b too: it may be a module)."""
    names = set()
    package = module if is_package else module.rpartition(".")[0]
    for child in ast.walk(node):
        if isinstance(child, ast.Import):
            names |= {alias.name for alias in child.names}
        elif isinstance(child, ast.ImportFrom):
            base = child.module or ""
            if child.level:  # relative: from . import x
                anchor = package.split(".")[: len(package.split(".")) - child.level + 1]
                base = ".".join(anchor + ([base] if base else []))
            names.add(base)
            names |= {f"{base}.{alias.name}" for alias in child.names}
    return names


def closure(start: set[str], root: Path = paths.REPO) -> set[str]:
    """Repository files (relative paths) of every cube/harness module reachable from ``start`` (module names)."""
    seen: set[Path] = set()
    todo = list(start)
    while todo:
        name = todo.pop()
        path = module_file(name, root)
        if path is None or path in seen:
            continue
        seen.add(path)
        tree = ast.parse(path.read_text(encoding="utf-8"))
        todo += [n for n in imported_names(tree, name, path.name == "__init__.py") if n.split(".")[0] in PACKAGES]
        parts = name.split(".")
        todo += [".".join(parts[:i]) for i in range(1, len(parts))]  # importing a.b.c runs a and a.b's __init__
    return {path.relative_to(root).as_posix() for path in seen}


def import_graph(root: Path = paths.REPO) -> dict[str, set[str]]:
    """Every cube/harness module (as its file) and the cube/harness modules it imports, at any depth of its code."""
    graph = {}
    for path in sorted(p for package in PACKAGES for p in (root / package).rglob("*.py")):
        relative = path.relative_to(root)
        name = ".".join(relative.with_suffix("").parts).removesuffix(".__init__")
        imported = imported_names(ast.parse(path.read_text(encoding="utf-8")), name, path.name == "__init__.py")
        targets = {module_file(n, root) for n in imported if n.split(".")[0] in PACKAGES}
        graph[relative.as_posix()] = {t.relative_to(root).as_posix() for t in targets if t and t != path
                                      and t.name != "__init__.py"}
    return graph


def import_cycles(root: Path = paths.REPO) -> list[list[str]]:
    """The import cycles among the modules (package __init__ files aside), each as the files around it."""
    graph, cycles, done = import_graph(root), [], set()

    def visit(node: str, trail: list[str]) -> None:
        if node in trail:
            cycle = trail[trail.index(node):]
            if sorted(cycle) not in [sorted(c) for c in cycles]:
                cycles.append(cycle)
            return
        if node in done:
            return
        for nxt in sorted(graph.get(node, ())):
            visit(nxt, trail + [node])
        done.add(node)

    for node in graph:
        visit(node, [])
    return cycles


RUNNER = "harness/stages/__main__.py"
RUNNER_MODULE = "harness.stages.__main__"
STAGE_COMMAND = ["python", "-m", "harness.stages"]


def executed_by(stage: str, root: Path = paths.REPO) -> set[str]:
    """Files a ``python -m harness.stages <stage>`` process may execute."""
    runner = ast.parse((root / RUNNER).read_text(encoding="utf-8"))
    top: set[str] = set()
    for node in runner.body:
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            top |= imported_names(node, RUNNER_MODULE)
    function = next((n for n in runner.body if isinstance(n, ast.FunctionDef) and n.name == f"stage_{stage}"), None)
    if function is None:
        raise ValueError(f"{RUNNER} has no stage {stage!r} (no function stage_{stage})")
    # run as `python -m`, the runner is __main__, and its package's __init__ files run first
    modules = closure(top | imported_names(function, RUNNER_MODULE) | {"harness.stages"}, root) | {RUNNER}
    return modules | templates_of(modules, root) | {source for module in modules for source in COMPILED.get(module, ())}


def templates_of(modules: set[str], root: Path = paths.REPO) -> set[str]:
    """The templates those modules render: ``<module>.<kind>.j2`` beside ``<module>.py`` (report.py: report.md.j2)."""
    found = set()
    for module in modules:
        path = root / module
        found |= {t.relative_to(root).as_posix() for t in path.parent.glob(f"{path.stem}.*.j2")}
    return found


def is_code(dep: str) -> bool:
    return dep.split("/")[0] in PACKAGES and dep.endswith((".py", ".j2", ".c"))


def stage_bodies(document: dict) -> list[tuple[str, dict]]:
    """(name, the mapping that holds cmd and deps) for every stage; a foreach stage's ``do`` once."""
    return [(name, stage["do"] if "foreach" in stage else stage) for name, stage in document["stages"].items()]


def wanted(body: dict, root: Path = paths.REPO) -> list[str] | None:
    """The code dependencies a stage should list, or None for a stage that depends on whole package folders."""
    deps = [str(d).rstrip("/") for d in body.get("deps", [])]
    if any(d in PACKAGES for d in deps):
        return None
    command = str(body["cmd"]).split()
    if command[:3] != STAGE_COMMAND:
        raise ValueError(f"dvc.yaml: stage command {body['cmd']!r} is not `python -m harness.stages <stage>`")
    return sorted(executed_by(command[3], root))


def differences(document: dict, root: Path = paths.REPO) -> list[str]:
    """What dvc.yaml's code lists lack or list needlessly, one line per stage that differs."""
    found = []
    for name, body in stage_bodies(document):
        code = wanted(body, root)
        if code is None:
            continue
        listed = {str(d) for d in body.get("deps", []) if is_code(str(d))}
        missing, extra = sorted(set(code) - listed), sorted(listed - set(code))
        if missing or extra:
            found.append(f"stage {name}: missing {missing or 'nothing'}; listed but not executed {extra or 'nothing'}")
    return found


def _yaml():
    from ruamel.yaml import YAML

    yaml = YAML()  # round trip: comments, order and quoting kept
    yaml.indent(mapping=2, sequence=4, offset=2)
    yaml.width = 4096
    return yaml


def write(dvc_yaml: Path, root: Path = paths.REPO) -> int:
    """Rewrite every stage's code list in place (other deps first, as they were); the number of stages changed."""
    yaml = _yaml()
    document = yaml.load(dvc_yaml.read_text(encoding="utf-8"))
    changed = 0
    for _, body in stage_bodies(document):
        code = wanted(body, root)
        if code is None:
            continue
        deps = body["deps"]
        kept = [d for d in deps if not (isinstance(d, str) and is_code(d))]
        if [d for d in deps if isinstance(d, str) and is_code(d)] != code:
            changed += 1
            trailing = deps.ca.items.pop(len(deps) - 1, None)  # a comment after the list hangs on its last item
            deps.clear()
            deps.extend(kept + code)
            if trailing:
                deps.ca.items[len(deps) - 1] = trailing
    out = io.StringIO()
    yaml.dump(document, out)
    atomic.write_text(dvc_yaml, out.getvalue())
    return changed


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m harness code-deps", description=__doc__.splitlines()[0])
    parser.add_argument("--write", action="store_true", help="rewrite dvc.yaml's code lists")
    parser.add_argument("--dvc-yaml", type=Path, default=Path("dvc.yaml"))
    args = parser.parse_args(argv)
    if args.write:
        print(f"{args.dvc_yaml}: {write(args.dvc_yaml)} stage(s) rewritten")
        return 0
    found = differences(_yaml().load(args.dvc_yaml.read_text(encoding="utf-8")))
    cycles = import_cycles()
    for line in found + [f"import cycle: {' -> '.join([*cycle, cycle[0]])}" for cycle in cycles]:
        print(line, file=sys.stderr)
    if found:
        print(f"fix: python -m harness code-deps --write rewrites {args.dvc_yaml}'s lists", file=sys.stderr)
    if found or cycles:
        return 1
    print(f"{args.dvc_yaml}: every stage lists exactly the code it executes; no import cycles in cube/ and harness/")
    return 0
