#!/usr/bin/env bash
# CI's container step: build the CPU image, run the tiny pipeline in it on a mounted repository, and
# check that its evaluation metrics equal those of the same tiny pipeline run outside the container.
#
#   docker/ci.sh
#
# - No Docker engine reachable and none can be started (not root, no dockerd, dockerd fails): says so
#   loudly and exits 0, so the rest of CI still runs.
# - An engine is up (or this script started one: as root, `dockerd --storage-driver=vfs
#   --iptables=false --bridge=none`, stopped again at the end): a failed build, a failed run in the
#   container or a metric mismatch exits non-zero.
# - Base image: BASE_IMAGE if set, else python:3.11-slim-bookworm when it is present or can be pulled,
#   else a Debian bookworm base made by docker/make-base.sh (debootstrap from the configured mirror).
# - pip inside the build uses this host's indexes, wheel directory and CA bundle (docker/build.sh).
# Environment: PYTHON (default .venv/bin/python), IMAGE (default cube-bench:cpu), CUBE_DOCKER_STORAGE
# (default vfs), CUBE_DOCKER_ROOT (dockerd's data root), CUBE_KEEP_DOCKERD=1 to leave a started engine
# running, CUBE_CI_EXP=0 to skip the `dvc exp run` check in the container.
set -uo pipefail
cd "$(dirname "$0")/.."
repo=$(pwd)

python=${PYTHON:-.venv/bin/python}
[ -x "$python" ] || python=$(command -v python3)
case "$python" in /*) ;; */*) python="$repo/$python" ;; *) python=$(command -v "$python") ;; esac
image=${IMAGE:-cube-bench:cpu}
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
base=${BASE_IMAGE:-}
if [ -z "$base" ]; then
  if docker image inspect python:3.11-slim-bookworm >/dev/null 2>&1 \
     || timeout 60 docker pull -q python:3.11-slim-bookworm >/dev/null 2>&1; then
    base=python:3.11-slim-bookworm
  else
    echo "ci.sh: python:3.11-slim-bookworm cannot be pulled; making a Debian base with docker/make-base.sh"
    docker/make-base.sh cube-bench-base:bookworm || fail "docker/make-base.sh could not make a base image"
    base=cube-bench-base:bookworm
  fi
fi
t_base=$(since "$t")
echo "ci.sh: base image $base (${t_base}s)"

# ---- the tiny workspace, twice: one for the run outside, one for the container --------------------
mkdir -p "$work/outside" "$work/inside"
"$python" -c 'import sys; from pathlib import Path; from harness.tiny import make_workspace; make_workspace(Path(sys.argv[1]))' \
  "$work/outside" || fail "could not make the tiny workspace"
cp -a "$work/outside/." "$work/inside/"
# the container's repository has no git identity of its own: the entrypoint must supply one
git -C "$work/inside" config --unset user.email || true
git -C "$work/inside" config --unset user.name || true

# the run outside goes on while the image builds (different processes, same seed: same metrics)
t_outside0=$(date +%s)
( cd "$work/outside" && PATH="$(dirname "$python"):$PATH" HF_HUB_OFFLINE=1 "$python" -m dvc repro >"$work/outside.log" 2>&1; echo $? >"$work/outside.rc";
  date +%s >"$work/outside.end" ) &
outside_pid=$!

# ---- the build -------------------------------------------------------------------------------------
t=$(date +%s)
IMAGE="$image" PYTHON="$python" docker/build.sh cpu --build-arg "BASE_IMAGE=$base" || fail "docker build of Dockerfile.cpu failed"
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
  || fail "the container's metrics/evaluate.json differs from the run outside"

t_exp=0
if [ "${CUBE_CI_EXP:-1}" != 0 ]; then
  t=$(date +%s)
  docker run --rm --network none "${as[@]}" -v "$work/inside:/work" "$image" \
    sh -c 'dvc exp run -S cube.steps=3 && dvc exp show --md --drop ".*" --keep "Experiment|cube.steps|stages.advanced.test.mrr"' \
    >"$work/exp.log" 2>&1 || { tail -n 40 "$work/exp.log"; fail "dvc exp run in the container failed"; }
  t_exp=$(since "$t")
  tail -n 8 "$work/exp.log"
  echo "ci.sh: dvc exp run + exp show in the container: ${t_exp}s"
fi

loud "CONTAINER CHECK PASSED: $image built on $base; dvc repro in the container wrote the same" \
     "metrics/evaluate.json as the run outside." \
     "Times: base ${t_base}s, build ${t_build}s, pipeline in container ${t_run}s, exp run ${t_exp}s; step total $(since "$t_start")s"
