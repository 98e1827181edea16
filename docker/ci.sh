#!/usr/bin/env bash
# CI's container step: build the CPU image, run the tiny pipeline in it on a mounted repository, and
# check that its evaluation metrics equal those of the same tiny pipeline run outside the container.
#
#   docker/ci.sh          the CPU image, cube:cpu (CI runs this)
#   docker/ci.sh cuda     the CUDA image, cube:cuda, the same way (make container-check-cuda; not in CI:
#                         its torch is 3.5 GB); also prints the device doctor from inside, and compares with
#                         a run in cube:cpu too when that image is present
#
# - No Docker engine reachable and none can be started (not root, no dockerd, dockerd fails): says so
#   loudly and exits 0, so the rest of CI still runs.
# - An engine is up (or this script started one: as root, `dockerd --storage-driver=vfs
#   --iptables=false --bridge=none`, stopped again at the end): a failed build, a failed run in the
#   container or a metric mismatch exits non-zero.
# - Base image: docker/base.sh (BASE_IMAGE if set, else python:3.11-slim-bookworm when it can be had,
#   else a Debian bookworm base made by docker/make-base.sh).
# - pip inside the build uses this host's indexes, wheel directory and CA bundle (docker/build.sh).
# Environment: PYTHON (default .venv/bin/python), IMAGE (default cube:<kind>), CUBE_DOCKER_STORAGE
# (default vfs), CUBE_DOCKER_ROOT (dockerd's data root), CUBE_KEEP_DOCKERD=1 to leave a started engine
# running, CUBE_CI_EXP=0 to skip the `dvc exp run` check in the container (a rival's setting changed, one seed:
# evaluate re-runs), CUBE_CI_TOLERANCE the largest absolute metric difference accepted (default 0: equal to the bit).
set -uo pipefail
cd "$(dirname "$0")/.."
repo=$(pwd)

python=${PYTHON:-.venv/bin/python}
[ -x "$python" ] || python=$(command -v python3)
case "$python" in /*) ;; */*) python="$repo/$python" ;; *) python=$(command -v "$python") ;; esac
kind=${1:-cpu}
case "$kind" in cpu|cuda) ;; *) echo "usage: docker/ci.sh [cpu|cuda]" >&2; exit 2 ;; esac
image=${IMAGE:-cube:$kind}
tolerance=${CUBE_CI_TOLERANCE:-0}
t_start=$(date +%s)

loud() {
  printf '\n%s\n' "################################################################################"
  printf '# %s\n' "$@"
  printf '%s\n\n' "################################################################################"
}
since() { echo $(( $(date +%s) - $1 )); }

# ---- the engine ---------------------------------------------------------------------------------
# On a fresh Debian machine as root, install the engine (and debootstrap for the base image) first;
# where that is impossible the step below says so loudly and the rest of CI still runs.
if [ "$(id -u)" = 0 ] && ! command -v dockerd >/dev/null 2>&1 && command -v apt-get >/dev/null 2>&1; then
  echo "ci.sh: installing Debian's docker.io and debootstrap"
  if ! { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq docker.io debootstrap >/dev/null; }; then
    echo "ci.sh: apt-get could not install docker.io"
  fi
fi
dockerd_pid=""
engine_problem=""
if ! command -v docker >/dev/null 2>&1; then
  engine_problem="no docker CLI on PATH"
elif docker info >/dev/null 2>&1; then
  echo "ci.sh: using the running Docker engine"
elif [ "$(id -u)" != 0 ]; then
  engine_problem="no Docker engine is running and this user (uid $(id -u)) cannot start one"
elif ! command -v dockerd >/dev/null 2>&1; then
  engine_problem="no Docker engine is running and there is no dockerd (Debian: apt-get install docker.io)"
else
  log=/tmp/cube-ci-dockerd.log
  echo "ci.sh: starting dockerd --storage-driver=${CUBE_DOCKER_STORAGE:-vfs} --iptables=false --bridge=none (log: $log)"
  dockerd --storage-driver="${CUBE_DOCKER_STORAGE:-vfs}" --iptables=false --bridge=none \
    ${CUBE_DOCKER_ROOT:+--data-root "$CUBE_DOCKER_ROOT"} >"$log" 2>&1 &
  dockerd_pid=$!
  for _ in $(seq 60); do
    docker info >/dev/null 2>&1 && break
    kill -0 "$dockerd_pid" 2>/dev/null || break
    sleep 1
  done
  if ! docker info >/dev/null 2>&1; then
    engine_problem="dockerd did not start: $(tail -n 3 "$log" | tr '\n' ' ')"
    kill "$dockerd_pid" 2>/dev/null; wait "$dockerd_pid" 2>/dev/null
    dockerd_pid=""
  fi
fi
if [ -n "$engine_problem" ]; then
  loud "CONTAINER CHECK SKIPPED: $engine_problem." \
       "The CPU image was NOT built and the pipeline was NOT run in a container." \
       "The other CI checks still run; this step is not a failure."
  exit 0
fi

work=$(mktemp -d /tmp/cube-ci-docker.XXXXXX)
outside_pid=""
cleanup() {
  [ -n "$outside_pid" ] && kill "$outside_pid" 2>/dev/null
  rm -rf "$work"
  if [ -n "$dockerd_pid" ] && [ "${CUBE_KEEP_DOCKERD:-0}" != 1 ]; then
    kill "$dockerd_pid" 2>/dev/null; wait "$dockerd_pid" 2>/dev/null
  fi
}
trap cleanup EXIT
fail() { loud "CONTAINER CHECK FAILED: $*"; exit 1; }

# ---- the base image -------------------------------------------------------------------------------
t=$(date +%s)
base=$(docker/base.sh) || fail "no base image: docker/base.sh could not pull or make one"
t_base=$(since "$t")
echo "ci.sh: base image $base (${t_base}s)"

# ---- the tiny workspace, twice: one for the run outside, one for the container --------------------
# one seed: the check is that the container computes what the host computes, not a verdict (and it saves CI time)
mkdir -p "$work/outside" "$work/inside"
"$python" - "$work" <<'PY' || fail "could not make the tiny workspace"
import sys
from pathlib import Path

import yaml

from harness.workflows.profile import TINY, make_workspace

overlay = yaml.safe_load(TINY.read_text(encoding="utf-8")) | {"quality": {"extra_seeds": []}}
one_seed = Path(sys.argv[1]) / "tiny-one-seed.yaml"
one_seed.write_text(yaml.safe_dump(overlay, sort_keys=False), encoding="utf-8")
make_workspace(Path(sys.argv[1]) / "outside", one_seed)
PY
cp -a "$work/outside/." "$work/inside/"
# the container's repository has no git identity of its own: the entrypoint must supply one
git -C "$work/inside" config --unset user.email || true
git -C "$work/inside" config --unset user.name || true

# the run outside goes on while the image builds (different processes, same seed, the same pinned numerics: the
# same metrics), as far as evaluate: the metrics compared; the container runs every stage
t_outside0=$(date +%s)
( cd "$work/outside" && PATH="$(dirname "$python"):$PATH" HF_HUB_OFFLINE=1 "$python" -m dvc repro evaluate >"$work/outside.log" 2>&1; echo $? >"$work/outside.rc";
  date +%s >"$work/outside.end" ) &
outside_pid=$!

# ---- the build -------------------------------------------------------------------------------------
t=$(date +%s)
IMAGE="$image" PYTHON="$python" docker/build.sh "$kind" --build-arg "BASE_IMAGE=$base" || fail "docker build of Dockerfile.$kind failed"
t_build=$(since "$t")
echo "ci.sh: built $image in ${t_build}s ($(docker image inspect -f '{{.Size}}' "$image" | awk '{printf "%.0f MB", $1/1e6}'))"

wait "$outside_pid"; outside_pid=""
[ "$(cat "$work/outside.rc")" = 0 ] || { tail -n 40 "$work/outside.log"; fail "dvc repro outside the container failed"; }
echo "ci.sh: tiny pipeline outside the container: $(( $(cat "$work/outside.end") - t_outside0 ))s"

# ---- the run in the container ------------------------------------------------------------------------
# The image runs as a non-root user. As root here, the throw-away repository is handed to that user;
# anyone else runs the container as themselves (--user), the owner of the repository.
if [ "$(id -u)" = 0 ]; then
  ids=$(docker run --rm --network none --entrypoint sh "$image" -c 'echo "$(id -u):$(id -g)"')
  chown -R "$ids" "$work/inside"
  as=()
else
  as=(--user "$(id -u):$(id -g)")
fi
t=$(date +%s)
docker run --rm --network none "${as[@]}" -v "$work/inside:/work" "$image" dvc repro >"$work/inside.log" 2>&1 \
  || { tail -n 40 "$work/inside.log"; fail "dvc repro in the container failed"; }
t_run=$(since "$t")
echo "ci.sh: tiny pipeline in the container: ${t_run}s"
grep -F "device used" "$work/inside/reports/report.md" || fail "the container's report names no device"

"$python" docker/compare_metrics.py "$work/outside/metrics/evaluate.json" "$work/inside/metrics/evaluate.json" \
  --tolerance "$tolerance" || fail "the container's metrics/evaluate.json differs from the run outside"

if [ "$kind" = cuda ]; then
  echo "ci.sh: the device doctor in $image:"
  docker run --rm --network none "${as[@]}" -v "$work/inside:/work" "$image" python -m harness doctor \
    || fail "the doctor failed in $image"
  if docker image inspect cube:cpu >/dev/null 2>&1; then
    mkdir -p "$work/cpu" && cp -a "$work/outside/." "$work/cpu/"
    [ "$(id -u)" = 0 ] && chown -R "$ids" "$work/cpu"
    t=$(date +%s)
    docker run --rm --network none "${as[@]}" -v "$work/cpu:/work" cube:cpu dvc repro >"$work/cpu.log" 2>&1 \
      || { tail -n 40 "$work/cpu.log"; fail "dvc repro in cube:cpu failed"; }
    echo "ci.sh: tiny pipeline in cube:cpu: $(since "$t")s; cube:cuda against cube:cpu:"
    "$python" docker/compare_metrics.py "$work/cpu/metrics/evaluate.json" "$work/inside/metrics/evaluate.json" \
      --tolerance "$tolerance" || fail "cube:cuda's metrics/evaluate.json differs from cube:cpu's"
  fi
fi

t_exp=0
if [ "${CUBE_CI_EXP:-1}" != 0 ]; then
  t=$(date +%s)
  docker run --rm --network none "${as[@]}" -v "$work/inside:/work" "$image" \
    sh -c 'dvc exp run -S baselines.mlp.hidden=256 -S "quality.extra_seeds=[]" evaluate && dvc exp show --md --drop ".*" --keep "Experiment|baselines.mlp.hidden|test_mrr"' \
    >"$work/exp.log" 2>&1 || { tail -n 40 "$work/exp.log"; fail "dvc exp run in the container failed"; }
  t_exp=$(since "$t")
  tail -n 8 "$work/exp.log"
  echo "ci.sh: dvc exp run + exp show in the container: ${t_exp}s"
fi

loud "CONTAINER CHECK PASSED: $image built on $base; dvc repro in the container wrote the same" \
     "metrics/evaluate.json as the run outside." \
     "Times: base ${t_base}s, build ${t_build}s, pipeline in container ${t_run}s, exp run ${t_exp}s; step total $(since "$t_start")s"
