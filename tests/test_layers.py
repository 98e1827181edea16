"""The folders are layers: each imports only from the layers below it, so a folder's name says what it may depend on.

cube (the model library) < harness.stats (numbers in, numbers out) < harness.store (typed results) <
harness.measure (timings, no verdicts) < harness.judge (verdicts) < harness.render (pages) < harness.stages and
harness.workflows < the CLI, which nothing imports. Read from ``import_graph`` (every import, lazy ones included).
"""

from __future__ import annotations

import pytest

from harness.workflows.code_deps import import_graph

FORBIDDEN = {  # folder -> folders its modules must not import
    "cube/": ("harness/",),
    "harness/stats/": ("harness/store/", "harness/measure/", "harness/judge/", "harness/render/", "harness/stages/",
                       "harness/workflows/"),
    "harness/store/": ("harness/measure/", "harness/judge/", "harness/render/", "harness/stages/", "harness/workflows/"),
    "harness/measure/": ("harness/judge/", "harness/render/", "harness/stages/", "harness/workflows/"),
    "harness/judge/": ("harness/render/", "harness/stages/", "harness/workflows/"),
    "harness/render/": ("harness/measure/", "harness/stages/", "harness/workflows/"),
}


def crossings(graph: dict[str, set[str]]) -> list[str]:
    found = []
    for module, imported in graph.items():
        for folder, below in FORBIDDEN.items():
            if module.startswith(folder):
                found += [f"{module} imports {target}" for target in sorted(imported) if target.startswith(below)]
        if module.startswith("harness/stages/") and module != "harness/stages/__main__.py":
            found += [f"{module} imports another stage, {target}" for target in sorted(imported)
                      if target.startswith("harness/stages/")]
        found += [f"{module} imports the CLI" for target in imported if target == "harness/__main__.py"]
    return found


def test_no_module_imports_above_its_layer():
    assert crossings(import_graph()) == []


@pytest.mark.parametrize(("module", "target"), [
    ("harness/store/results.py", "harness/judge/targets.py"),
    ("harness/render/report.py", "harness/measure/peer_ratios.py"),
    ("harness/stages/evaluate.py", "harness/stages/train.py"),
    ("harness/stats/paired.py", "harness/store/results.py"),
    ("harness/judge/gate.py", "harness/render/report.py"),
])
def test_an_import_against_the_layers_is_found(module, target):
    graph = import_graph()
    graph[module] = graph[module] | {target}
    assert len(crossings(graph)) == 1
