"""`make compare`: experiments in one screen, swept settings beside the figures, best validation first."""

from __future__ import annotations

from harness.render.compare import blank_unmeasured_speed, rows_of, table


def entry(name: str, steps: int, hidden: int, val: float | None) -> dict:
    metrics = {} if val is None else {"metrics/quality.json": {"data": {
        "val_mrr": val, "test_mrr": val - 0.01, "test_recall@1": val / 2, "mrr_minus_linear": -0.002}},
        "metrics/speed.json": {"data": {"train_samples_per_s": 731.2}}}
    return {"rev": name * 8, "name": name, "error": None if val is not None else {"msg": "failed"},
            "data": {"params": {"params.yaml": {"data": {"seed": 0, "cube": {"steps": steps, "hidden": hidden,
                                                                             "lattice": [8, 8, 6]}}}},
                     "metrics": metrics}}


def test_only_the_swept_settings_are_shown_and_rows_are_ranked_on_validation():
    running = {"revs": [entry("exp-d", 8, 16, 0.25)], "executor": {"state": "running"}}  # the workspace's figures
    shown = [{**entry("workspace", 10, 32, 0.25), "experiments": None, "name": None, "rev": "workspace"},
             {**entry("main", 10, 32, 0.25), "experiments": [
                 {"revs": [entry("exp-a", 5, 32, 0.20)]}, {"revs": [entry("exp-b", 20, 16, 0.30)]},
                 {"revs": [entry("exp-c", 40, 16, None)]}, running]}]
    text = table(rows_of(shown))
    header, _, *rows = text.splitlines()[:8]
    assert header == ("| experiment | cube.steps | cube.hidden | val MRR | test MRR | test R@1 | MRR - linear | "
                      "train samples/s |")
    assert [row.split(" | ")[0].lstrip("| ") for row in rows] == ["exp-b", "workspace", "main", "exp-a",
                                                                 "exp-c (failed)", "exp-d (running)"]
    assert rows[0] == "| exp-b | 20 | 16 | 0.3000 | 0.2900 | 0.1500 | -0.0020 | 731 |"


def lock(hidden: int) -> str:
    return ("stages:\n  bench:\n    params:\n      params.yaml:\n        seed: 0\n"
            f"        cube:\n          steps: 10\n          hidden: {hidden}\n          lattice: [8, 8, 6]\n")


def test_a_speed_the_bench_did_not_measure_under_the_rows_settings_is_left_blank():
    """An experiment stopped at `evaluate` carries its workspace's speed file: by its dvc.lock the bench ran with
    hidden 32, so the hidden-16 row shows no speed; the row whose bench ran under its own settings keeps its figure."""
    shown = [{**entry("workspace", 10, 32, 0.25), "experiments": [
        {"revs": [entry("evaluated", 10, 16, 0.30)]}, {"revs": [entry("benched", 10, 16, 0.28)]},
        {"revs": [entry("no-lock", 10, 32, 0.20)]}]}]
    locks = {"workspace" * 8: lock(32), "evaluated" * 8: lock(32), "benched" * 8: lock(16)}
    rows = rows_of(shown)
    blank_unmeasured_speed(rows, locks.get)
    assert {row["name"]: row["figures"]["train samples/s"] for row in rows} == {
        "workspace": 731.2, "evaluated": None, "benched": 731.2, "no-lock": None}
    text = table(rows)
    assert "| evaluated | 16 | 0.3000 | 0.2900 | 0.1500 | -0.0020 |  |" in text, text
    assert "blank where the bench did not run under the row's own settings" in text
