"""`make compare`: experiments in one screen, swept settings beside the figures, best validation first."""

from __future__ import annotations

from harness.compare import rows_of, table


def entry(name: str, steps: int, hidden: int, val: float | None) -> dict:
    metrics = {} if val is None else {"metrics/quality.json": {"data": {
        "val_mrr": val, "test_mrr": val - 0.01, "test_recall@1": val / 2, "mrr_minus_linear": -0.002}},
        "metrics/speed.json": {"data": {"train_samples_per_s": 731.2}}}
    return {"rev": name * 8, "name": name, "error": None if val is not None else {"msg": "failed"},
            "data": {"params": {"params.yaml": {"data": {"seed": 0, "cube": {"steps": steps, "hidden": hidden,
                                                                             "lattice": [8, 8, 6]}}}},
                     "metrics": metrics}}


def test_only_the_swept_settings_are_shown_and_rows_are_ranked_on_validation():
    shown = [{**entry("workspace", 10, 32, 0.25), "experiments": None},
             {**entry("main", 10, 32, 0.25), "experiments": [
                 {"revs": [entry("exp-a", 5, 32, 0.20)]}, {"revs": [entry("exp-b", 20, 16, 0.30)]},
                 {"revs": [entry("exp-c", 40, 16, None)]}]}]
    text = table(rows_of(shown))
    header, _, *rows = text.splitlines()[:7]
    assert header == ("| experiment | cube.steps | cube.hidden | val MRR | test MRR | test R@1 | MRR - linear | "
                      "train samples/s |")
    assert [row.split(" | ")[0].lstrip("| ") for row in rows] == ["exp-b", "workspace", "main", "exp-a",
                                                                 "exp-c (failed)"]
    assert rows[0] == "| exp-b | 20 | 16 | 0.3000 | 0.2900 | 0.1500 | -0.0020 | 731 |"
