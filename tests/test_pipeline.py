"""The whole DVC pipeline on a tiny configuration, in a temporary git repository made from this tree."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from cube.rivals import LEGACY
from harness.config import load_params
from harness.render.gate_report import verdicts_in

ROOT = Path(__file__).resolve().parent.parent
pytestmark = pytest.mark.slow

REPORT_SECTIONS = ["## The answer", "## Provenance", "## Data", "## Quality on the test split", "## Stages", "### autoencoder",
                   "### dialogue", "### optimized", "### advanced", "## Device", "## Throughput and latency", "## Memory",
                   "## Peers", "## Roofline", "## Scaling", "### Against lattice side", "### Against propagation steps",
                   "### Is the cube better? Paired differences on the test pairs", "## Reliability"]
# experiments that test DVC's mechanics, not a verdict, train one seed instead of the profile's five (CI's time)
ONE_SEED = "quality.extra_seeds=[]"
REPORT_PNGS = ["loss_curves.png", "test_quality.png", "paired_differences.png", "throughput.png", "scaling.png"]


def run(command: list[str], cwd: Path, check: bool = True, **extra_env: str) -> subprocess.CompletedProcess:
    env = dict(os.environ, PATH=f"{Path(sys.executable).parent}:{os.environ['PATH']}", HF_HUB_OFFLINE="1", **extra_env)
    result = subprocess.run(command, cwd=cwd, env=env, capture_output=True, text=True)
    if check and result.returncode != 0:
        raise AssertionError(f"{' '.join(command)} failed ({result.returncode}):\n{result.stdout}\n{result.stderr}")
    return result


def dvc(*args: str, cwd: Path, check: bool = True) -> subprocess.CompletedProcess:
    return run([sys.executable, "-m", "dvc", *args], cwd, check)


def gate(repo: Path, baseline: Path) -> subprocess.CompletedProcess:
    return run([sys.executable, "-m", "harness", "gate", "--profile", "tiny", "--baseline", str(baseline),
                "--code-repo", str(ROOT)], repo, check=False)


@pytest.fixture(scope="module")
def repo(tiny_run: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A copy of the tiny run (this working tree as a fresh git repo, `dvc repro` under the tiny profile), which this
    module's tests go on to change."""
    return Path(shutil.copytree(tiny_run, tmp_path_factory.mktemp("pipeline") / "repo", symlinks=True))


def test_every_declared_metrics_file_exists_with_its_keys(repo):
    evaluation = json.loads((repo / "metrics/evaluate.json").read_text())
    assert set(evaluation["stages"]) == {"autoencoder", "dialogue", "optimized", "advanced"}
    assert {"identity", "mean answer", "ridge", "procrustes", "linear (contrastive)", "mlp",
            "legacy q+0.15tanh(q)"} <= set(evaluation["baselines"])
    params = load_params(repo / "params.yaml")
    for name, tuned in (("mlp", params.baselines.mlp), ("linear (contrastive)", params.baselines.linear)):
        stages = {"dialogue", "optimized", "advanced"} if tuned.chain else {"advanced"}  # the cube's stages
        assert set(evaluation["baselines"][name]["stages"]) == stages
    for result in [*evaluation["stages"].values(), *evaluation["baselines"].values()]:
        assert {"cosine", "recall@1", "recall@5", "recall@10", "mrr", "hubness"} <= set(result["test"])
    for stage in ("autoencoder", "dialogue", "optimized", "advanced"):
        summary = json.loads((repo / f"metrics/train_{stage}.json").read_text())
        assert summary["epochs_run"] == 2 and "wall_seconds" in summary
        live = json.loads((repo / f"dvclive/{stage}/metrics.json").read_text())
        # what dvc exp show compares is the kept epoch's figures, not the last epoch's
        assert live["kept_epoch"] == summary["best_epoch"] and "seconds" not in live
        assert live["val"] == {k: v for k, v in summary["val"].items() if k != "candidates"}
        assert (repo / f"dvclive/{stage}/plots/metrics/train_loss.tsv").exists()
    bench = json.loads((repo / "metrics/bench.json").read_text())
    assert [r["batch_size"] for r in bench["rows"]] == [1, 1, 16, 16]
    assert set(bench["peers"]["speed_ratios"]) == {f"{phase}_own_vs_{peer}" for phase in ("forward", "train")
                                                   for peer in ("per_sample_loop", "conv3d_reference", "eager_reference")}
    assert {t["device"] for t in bench["targets"]} == {"cpu", "cuda"}
    assert [r["side"] for r in bench["scaling"]["by_side"]["rows"]] == [2, 4, 6]
    assert set(bench["scaling"]["by_steps"]) == {"plain", "checkpointed"}
    assert {"forward", "train"} <= set(bench["roofline"])
    card = json.loads((repo / "metrics/data_card.json").read_text())
    assert card["pairs"]["test"] > 500  # CI's profile evaluates on many pairs, so the gate has power
    assert set(bench["work_per_sample"]) == {"counted_flops_forward", "counted_flops_train", "saved_bytes_train"}
    assert all(r["host_peak_increase_mib"] > 0 and r["tensor_peak_mib"] > 0 for r in bench["rows"])
    assert "train_own_vs_eager_reference" in bench["second_process_speed_ratios"]


def test_every_extra_seed_trains_its_own_chain_and_the_table_spans_all_seeds(repo):
    evaluation = json.loads((repo / "metrics/evaluate.json").read_text())
    runs = json.loads((repo / "metrics/evaluate_seeds.json").read_text())
    seeds = [0, *load_params(repo / "params.yaml").quality.extra_seeds]
    names = [str(seed) for seed in seeds]
    assert len(seeds) >= 5 and evaluation["summary"]["seeds"] == seeds and set(runs) == set(names)
    assert runs["0"]["stages"] == evaluation["stages"]  # the pipeline's own run is seed 0 of the table
    seeds_dir = repo / "checkpoints/seeds"
    chains = {0: (repo / "checkpoints", repo / "metrics")} | {seed: (seeds_dir / f"seed{seed}",) * 2 for seed in seeds[1:]}
    digests = set()
    for seed, (checkpoints, summaries) in chains.items():
        assert json.loads((summaries / "train_dialogue.json").read_text())["seed"] == seed
        digests.add(json.loads((checkpoints / "dialogue/checkpoint.json").read_text())["sha256"])
    assert len(digests) == len(seeds), "another seed must give other weights"
    mrr = [runs[seed]["stages"]["dialogue"]["test"]["mrr"] for seed in names]
    assert evaluation["summary"]["models"]["cube: dialogue"]["test"]["mrr"]["mean"] == pytest.approx(sum(mrr) / len(mrr))
    report = (repo / "reports/report.md").read_text(encoding="utf-8")
    assert f"mean ± sample standard deviation over seeds {', '.join(names)}" in report
    assert "The cube stage chosen on mean validation MRR is" in report and "**The quality target is" in report
    chosen = evaluation["chosen_stage"]
    for name, measures in evaluation["comparisons"].items():  # every baseline, paired over every seed's test pairs
        for measure in ("cosine", "recall@1", "mrr"):
            found = measures[measure]
            assert found["seeds"] == len(seeds) and found["pairs"] == evaluation["test_pairs"]
            assert found["low"] <= found["mean"] <= found["high"]
            ours = [runs[s]["stages"][chosen]["test"][measure] for s in names]
            theirs = [runs[s]["baselines"][name]["test"][measure] for s in names]
            assert found["mean"] == pytest.approx((sum(ours) - sum(theirs)) / len(seeds))
            if name == LEGACY:  # a near-identity map: one sentence, not a row
                assert f"| {name} | {measure} |" not in report and "The earlier system's fixed processor" in report
            else:
                assert f"| {name} | {measure} | {found['mean']:+.4f} |" in report
    assert "What this evaluation can decide" in report


def test_report_has_every_section_and_its_plots(repo):
    report = (repo / "reports/report.md").read_text(encoding="utf-8")
    for section in REPORT_SECTIONS:
        assert section in report, section
    headings = [line for line in report.splitlines() if line.startswith("## ")]
    assert headings[0] == "## The answer" and "The quality target is" in report.split("## Provenance")[0]
    for png in REPORT_PNGS:
        assert f"]({png})" in report
        assert (repo / "reports" / png).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_gate_passes_on_the_unchanged_run_against_the_committed_baseline(repo):
    result = gate(repo, ROOT / "reports/baseline.json")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "| metric | kind | baseline | current | verdict | detail |" in result.stdout
    verdicts = verdicts_in(result.stdout)
    assert "gate passed" in result.stdout and "REGRESSION" not in verdicts.values(), result.stdout
    assert "Params that differ" not in result.stdout  # the committed baseline is this very profile's
    assert "means compared" not in result.stdout and "WARNING" not in result.stdout  # pair by pair, not stale
    shallow = subprocess.run(["git", "-C", str(ROOT), "rev-parse", "--is-shallow-repository"], capture_output=True,
                             text=True).stdout.strip() == "true"
    if not shallow:  # the speed verdict: this code's cube against the baseline revision's, timed here
        assert "| speed.revision.train | speed |" in result.stdout and "NOT JUDGED" not in result.stdout


def test_gate_without_a_baseline_for_the_profile_says_how_to_make_one(repo, tmp_path):
    empty = tmp_path / "baseline.json"
    empty.write_text('{"profiles": {}}')
    result = gate(repo, empty)
    assert result.returncode == 2 and "python -m harness gate --profile tiny --update" in result.stderr


def test_dvc_sees_metrics_and_plots(repo):
    shown = json.loads(dvc("metrics", "show", "--json", cwd=repo).stdout)
    files = next(iter(shown.values()))["data"]
    assert set(files) == {"metrics/quality.json", "metrics/speed.json", *(f"dvclive/{stage}/metrics.json" for stage in
                          ("autoencoder", "dialogue", "optimized", "advanced"))}
    quality = files["metrics/quality.json"]["data"]
    assert set(quality) == {"val_mrr", "test_mrr", "test_recall@1", "test_cosine", "mrr_minus_identity",
                            "mrr_minus_linear", "seeds"}
    assert all(isinstance(value, (int, float)) for value in quality.values())  # no text in what dvc exp show lists


def test_second_repro_reruns_only_the_benchmark_and_what_reads_it(repo):
    output = dvc("repro", cwd=repo).stdout
    ran = {line.split("'")[1] for line in output.splitlines() if line.startswith("Running stage")}
    assert ran == {"bench", "report"}, output


def stale_stages(repo: Path) -> set[str]:
    """The stages `dvc status` lists as changed (always-changed ``bench`` left out: it re-times every run)."""
    lines = dvc("status", cwd=repo).stdout.splitlines()
    return {line[:-1] for line in lines if line.endswith(":") and not line[:1].isspace()} - {"bench"}


def test_editing_the_cli_help_or_the_report_template_reruns_only_what_reads_it(tiny_run, tmp_path):
    """The stages run ``python -m harness.stages``: the CLI's help is no stage's code, the report template is the
    report's only. ``reliability`` runs the test suite against the whole of harness/, the CLI included."""
    copy = Path(shutil.copytree(tiny_run, tmp_path / "repo", symlinks=True))
    assert stale_stages(copy) == set()

    cli = copy / "harness/__main__.py"
    help_text = '"validate params.yaml"'
    assert help_text in cli.read_text(encoding="utf-8")
    cli.write_text(cli.read_text(encoding="utf-8").replace(help_text, '"validate params.yaml, every section"'),
                   encoding="utf-8")
    assert stale_stages(copy) == {"reliability"}

    template = copy / "harness/render/report.md.j2"
    template.write_text(template.read_text(encoding="utf-8") + "\nOne more sentence.\n", encoding="utf-8")
    assert stale_stages(copy) == {"reliability", "report"}

    # and the check has teeth: a stage's own module edited marks that stage and every stage after it
    train = copy / "harness/stages/train.py"
    train.write_text(train.read_text(encoding="utf-8") + "\n# an edit\n", encoding="utf-8")
    stale = stale_stages(copy)
    assert {"train@dialogue", "train@optimized", "seeds", "reliability", "report"} <= stale, stale
    assert "datasets" not in stale and "check" not in stale, stale


FILL_CACHE_IN_ANOTHER_ORDER = """
import random
import torch
from cube.embedded import open_cache
from cube.pairs import load_pairs, split_by_question, unique_sentences
from cube.teachers import get_teacher
from harness.config import load_params
from cube.rivals import LEGACY

params = load_params("params.yaml")
pairs = load_pairs(params.data).pairs
splits = split_by_question(pairs, params.data.val_fraction, params.data.test_fraction, params.seed)
sentences = unique_sentences(splits.train + splits.val + splits.test)
random.Random(1).shuffle(sentences)
teacher = get_teacher(params.teacher.models[0], torch.device("cpu"))
cache = open_cache(teacher, params.data.cache_dir)
extra = ["a sentence the pipeline never asks for", "ok", "What is the meaning of all this, then?"]
start = 0
for size in [1, 7, 64, 3, 200] * 100:  # chunks of other sizes, mixed with strangers
    chunk = sentences[start : start + size]
    if not chunk:
        break
    cache.get(chunk + extra[: size % 4], lambda texts: teacher.encode(texts, progress=False))
    start += size
print(cache.stats.encoded)
"""


@pytest.mark.nightly
def test_an_empty_cache_and_one_filled_in_another_order_give_the_same_embeddings_so_nothing_after_reruns(repo):
    """The cache refilled in other chunks mixed with strangers: the datasets stage, forced, writes the same bits, so
    DVC finds every stage after it (training, evaluation, report) up to date: the evaluation stands unchanged.

    Nightly: in `make test`, tests/test_teachers.py::test_an_embedding_is_the_same_bits_whatever_it_is_encoded_with
    checks the same property on the teacher itself, and tests/test_portability.py runs the pipeline with a fresh cache
    and requires the tiny run's figures to the bit."""
    def embedded_hash() -> str:
        outs = yaml.safe_load((repo / "dvc.lock").read_text())["stages"]["datasets"]["outs"]
        return next(out["md5"] for out in outs if out["path"] == "data/embedded")

    first, evaluation = embedded_hash(), (repo / "metrics/evaluate.json").read_text()
    fresh = json.loads((repo / "metrics/datasets_run.json").read_text())
    assert fresh["teachers"][0]["cache_hits"] == 0  # the module's run encoded every sentence afresh
    shutil.rmtree(repo / "data/cache")
    run([sys.executable, "-c", FILL_CACHE_IN_ANOTHER_ORDER], repo)
    dvc("repro", "--force", "--single-item", "datasets", cwd=repo)
    facts = json.loads((repo / "metrics/datasets_run.json").read_text())["teachers"][0]
    assert facts["encoded"] == 0 and facts["cache_hits"] > 0  # every sentence came from that cache
    assert embedded_hash() == first
    stale = [line for line in dvc("status", cwd=repo).stdout.splitlines() if line.endswith(":")]
    assert stale == ["bench:"], stale  # bench is always re-timed
    assert (repo / "metrics/evaluate.json").read_text() == evaluation


def test_misspelt_or_invalid_values_fail_before_any_training(repo):
    run(["git", "add", "-A"], repo)
    run(["git", "commit", "-qm", "results"], repo, check=False)
    before = run(["git", "status", "--porcelain"], repo).stdout, dvc("status", cwd=repo).stdout
    for override, message in (("cube.stepz=3", "unknown key 'stepz' in cube; did you mean 'steps'?"),
                              ("cube.steps=ten", "cube.steps must be a whole number"),
                              ("cube.lattice=[2, 2, 3]", "does not fit lattice 2x2x3")):
        refused = run([sys.executable, "-m", "harness", "exp", "run", "-S", override], repo, check=False)
        assert refused.returncode == 2 and message in refused.stderr, refused.stderr
        assert "nothing was run" in refused.stderr and "Running stage" not in refused.stdout
        assert (run(["git", "status", "--porcelain"], repo).stdout, dvc("status", cwd=repo).stdout) == before
    # plain dvc: the check stage still refuses before any stage that trains
    bad = dvc("exp", "run", "-S", "+cube.stpes=3", cwd=repo, check=False)
    assert bad.returncode != 0
    assert "unknown key 'stpes' in cube; did you mean 'steps'?" in bad.stdout + bad.stderr
    assert "Running stage 'datasets'" not in bad.stdout
    assert (repo / "data/params.resolved.yaml").exists()  # persisted through the refused run
    run(["git", "checkout", "--", "params.yaml"], repo)  # a failed exp run leaves its change in the workspace


def test_exp_run_with_a_changed_value_is_listed_by_exp_show(repo):
    run(["git", "add", "-A"], repo)
    run(["git", "commit", "-qm", "results"], repo, check=False)
    dvc("exp", "run", "-S", "cube.steps=3", "-S", ONE_SEED, "evaluate", cwd=repo)
    shown = json.loads(dvc("exp", "show", "--json", cwd=repo).stdout)
    experiments = [e for entry in shown for e in (entry.get("experiments") or [])]
    steps = [e["revs"][0]["data"]["params"]["params.yaml"]["data"]["cube"]["steps"] for e in experiments]
    assert 3 in steps
    # make compare: both runs, told apart by the one setting that differs, beside their figures
    table = run(["make", "-s", "compare", f"BIN={Path(sys.executable).parent}"], repo).stdout
    header, _, *rows = table.splitlines()
    columns = header.strip("| ").split(" | ")
    assert columns[:2] == ["experiment", "cube.steps"] and "val MRR" in columns and len(columns) <= 12, table
    tiny_steps = yaml.safe_load((ROOT / "profiles/tiny.yaml").read_text())["cube"]["steps"]
    assert {row.split(" | ")[1] for row in rows if row.startswith("|")} >= {"3", str(tiny_steps)}, table


def test_a_colleague_pulls_the_run_and_an_experiment_through_the_remotes(repo, tmp_path):
    """The committed DVC remote (a folder on this machine; here a temp one) carries the embeddings and checkpoints
    behind the results: a second clone pulls them and DVC finds nothing to re-run. `dvc exp push` / `dvc exp pull`
    carry an experiment through a shared git repository and that remote."""
    storage, shared, colleague = tmp_path / "dvc-storage", tmp_path / "shared.git", tmp_path / "colleague"
    run(["git", "add", "-A"], repo)
    run(["git", "commit", "-qm", "results"], repo, check=False)
    dvc("remote", "modify", "--local", "storage", "url", str(storage), cwd=repo)
    run(["git", "init", "-q", "--bare", str(shared)], tmp_path)
    run(["git", "remote", "add", "origin", str(shared)], repo)
    run(["git", "push", "-q", "origin", "HEAD:refs/heads/main"], repo)
    dvc("push", cwd=repo)
    dvc("exp", "run", "-n", "fewer-steps", "-S", "cube.steps=3", "-S", ONE_SEED, "evaluate", cwd=repo)
    dvc("exp", "push", "origin", "fewer-steps", cwd=repo)

    run(["git", "clone", "-q", "-b", "main", str(shared), str(colleague)], tmp_path)
    dvc("remote", "modify", "--local", "storage", "url", str(storage), cwd=colleague)
    dvc("pull", cwd=colleague)
    assert (colleague / "data/embedded/card.json").read_bytes() == (repo / "data/embedded/card.json").read_bytes()
    status = dvc("status", "evaluate", cwd=colleague).stdout  # (`bench` is always_changed: it times this machine)
    assert "Data and pipelines are up to date" in status, status
    dvc("exp", "pull", "origin", "fewer-steps", cwd=colleague)
    shown = json.loads(dvc("exp", "show", "--json", cwd=colleague).stdout)
    pulled = [e["revs"][0] for entry in shown for e in (entry.get("experiments") or [])]
    assert [r["data"]["params"]["params.yaml"]["data"]["cube"]["steps"] for r in pulled] == [3]
    dvc("exp", "apply", "fewer-steps", cwd=colleague)
    dvc("pull", cwd=colleague)  # the experiment's checkpoints, pushed by `dvc exp push`
    status = dvc("status", "evaluate", cwd=colleague).stdout
    assert "Data and pipelines are up to date" in status, status


@pytest.mark.fault
def test_sigkill_mid_stage_then_rerun_resumes_to_exactly_the_uninterrupted_result(repo, tmp_path):
    """A real SIGKILL of `python -m harness train dialogue` after a checkpoint; the rerun resumes from it."""
    params = yaml.safe_load((repo / "params.yaml").read_text(encoding="utf-8"))
    params["train"]["dialogue"]["epochs"] = 12
    longer = tmp_path / "params.yaml"
    longer.write_text(yaml.safe_dump(params), encoding="utf-8")
    command = [sys.executable, "-m", "harness", "--params", str(longer), "train", "dialogue"]
    checkpoint, summary_path = repo / "checkpoints/dialogue", repo / "metrics/train_dialogue.json"
    curve = repo / "dvclive/dialogue/plots/metrics/val/mrr.tsv"

    def outcome() -> tuple[dict, list[list[str]]]:
        summary = json.loads(summary_path.read_text())
        rows = [line.split("\t")[1:] for line in curve.read_text().splitlines()[1:]]  # drop the timestamp column
        return {k: v for k, v in summary.items() if k not in ("wall_seconds", "resumed_from_epoch")}, rows

    shutil.rmtree(checkpoint)
    run(command, repo)
    uninterrupted = outcome()

    shutil.rmtree(checkpoint)
    env = dict(os.environ, PATH=f"{Path(sys.executable).parent}:{os.environ['PATH']}", HF_HUB_OFFLINE="1")
    process = subprocess.Popen(command, cwd=repo, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    sidecar = checkpoint / "checkpoint.json"
    while process.poll() is None and not (sidecar.exists() and json.loads(sidecar.read_text())["epoch"] >= 3):
        time.sleep(0.01)
    process.send_signal(signal.SIGKILL)
    process.wait()
    killed_at = json.loads(sidecar.read_text())
    assert process.returncode == -signal.SIGKILL and not killed_at["completed"], "the stage finished before the kill"

    rerun = run(command, repo)
    assert json.loads(summary_path.read_text())["resumed_from_epoch"] >= 3, rerun.stdout
    assert outcome() == uninterrupted


@pytest.mark.fault
def test_the_whole_pipeline_run_afresh_makes_no_network_connection(tiny_run, tmp_path):
    """The tiny run (every stage, embeddings computed afresh) ran with sockets blocked and logged in every Python
    process: dvc and each stage."""
    from conftest import socket_guard

    attempts = tmp_path / "connections.log"
    probe = run([sys.executable, "-c", "import socket; socket.create_connection(('pypi.org', 443), timeout=1)"],
                tiny_run, check=False, **socket_guard(tmp_path / "guard", attempts))
    assert probe.returncode != 0 and "network blocked by the test" in probe.stderr  # the guard is really in place
    assert "pypi.org" in attempts.read_text()  # and logged
    repro = (tiny_run.parent / "repro.log").read_text()
    assert "Running stage 'datasets'" in repro and "Running stage 'report'" in repro, repro
    fresh = json.loads((tiny_run / "metrics/datasets_run.json").read_text())
    assert fresh["teachers"][0]["cache_hits"] == 0  # every sentence was encoded in that run
    logged = tiny_run.parent / "connections.log"
    assert not logged.exists(), logged.read_text()


@pytest.mark.fault
def test_two_queued_experiments_run_side_by_side_and_both_show_their_metrics(repo):
    run(["git", "add", "-A"], repo)
    run(["git", "commit", "-qm", "before the queue"], repo, check=False)
    hidden_sizes = (128, 256)  # a rival's setting: each experiment re-runs evaluate, the trained cube is reused
    for hidden in hidden_sizes:
        dvc("exp", "run", "--queue", "-S", f"baselines.mlp.hidden={hidden}", "-S", ONE_SEED, "evaluate", cwd=repo)
    dvc("queue", "start", "-j", "2", cwd=repo)
    deadline = time.monotonic() + 1200
    try:
        while True:
            status = dvc("queue", "status", cwd=repo).stdout
            if not any(word in status for word in ("Queued", "Running")):
                break
            assert time.monotonic() < deadline, status
            time.sleep(5)
    finally:
        dvc("queue", "stop", cwd=repo, check=False)
    assert status.count("Success") >= len(hidden_sizes) and "Failed" not in status, status
    shown = json.loads(dvc("exp", "show", "--json", cwd=repo).stdout)
    finished = {}
    for entry in shown:
        for experiment in entry.get("experiments") or []:
            data = experiment["revs"][0]["data"]
            metrics = (data.get("metrics") or {}).get("metrics/quality.json", {}).get("data", {})
            finished[data["params"]["params.yaml"]["data"]["baselines"]["mlp"]["hidden"]] = metrics
    for hidden in hidden_sizes:
        assert 0 < finished[hidden]["test_mrr"] <= 1, (hidden, sorted(finished))


@pytest.mark.skipif(shutil.which("chromium") is None, reason="needs headless Chromium (Debian: apt-get install chromium)")
def test_dvc_plots_show_renders_every_plot_offline(repo):
    """`dvc plots show` with the setup's template draws every training curve with no network; DVC's own page, which
    loads vega from a CDN, draws none there (so the check can tell)."""
    run([sys.executable, "-m", "harness", "plots-page", "template"], repo)
    ours = run([sys.executable, "-m", "harness", "plots-page", "check"], repo, check=False)
    assert ours.returncode == 0 and "plots drawn by headless Chromium with no network" in ours.stdout, ours.stdout
    drawn = int(ours.stdout.split("ok: ")[1].split(" of ")[0])
    assert drawn >= 4 * 3  # at least training loss, val cosine and val MRR of each stage
    default_page = repo / "cdn.html"
    from dvc_render.html import PAGE_HTML

    default_page.write_text(PAGE_HTML, encoding="utf-8")
    cdn = run([sys.executable, "-m", "harness", "plots-page", "check", "--html-template", str(default_page)], repo,
              check=False)
    assert cdn.returncode == 1 and "FAILED: 0 of" in cdn.stdout


@pytest.mark.nightly
def test_dvc_exp_run_switches_the_task_with_one_setting(repo):
    """`-S data.task=translation`: the same pipeline maps German words to English ones, drawn from FreeDict, split by
    target lemma; the experiment runs apart from the workspace, which keeps its dialogue results.

    Nightly: in `make test`, test_exp_run_with_a_changed_value_is_listed_by_exp_show runs `dvc exp run -S` through the
    same pipeline, and tests/test_pairs.py and tests/test_dictionaries.py build the translation task's pairs."""
    before = (repo / "metrics/evaluate.json").read_text()
    run(["git", "add", "-A"], repo)
    run(["git", "commit", "-qm", "before the task switch"], repo, check=False)
    dvc("exp", "run", "--temp", "-n", "words", "-S", "data.task=translation", "-S", "data.max_pairs=600",
        "-S", ONE_SEED, "evaluate", cwd=repo)
    assert (repo / "metrics/evaluate.json").read_text() == before
    shown = json.loads(dvc("exp", "show", "--json", cwd=repo).stdout)
    (words,) = [e["revs"][0] for entry in shown for e in (entry.get("experiments") or [])
                if e["revs"][0].get("name") == "words"]
    assert words["data"]["params"]["params.yaml"]["data"]["data"]["task"] == "translation"
    assert 0 < words["data"]["metrics"]["metrics/quality.json"]["data"]["test_mrr"] <= 1
    # the card is an output, not a metric: read from the experiment's commit
    card = json.loads(run(["git", "show", f"{words['rev']}:metrics/data_card.json"], repo).stdout)
    assert card["task"] == "translation" and card["source"] == "FreeDict deu-eng"
    assert sum(card["pairs"].values()) == 600 and card["entries_dropped"]["inflected form (plural)"] > 0
