#!/usr/bin/env bash
# Build an image with this host's pip setup: its package indexes, local wheel directory and CA bundle
# (`pip config list`), served to the build on 127.0.0.1 by docker/pip_serve.py for the build's duration.
#
#   docker/build.sh cpu|cuda [more docker build options, e.g. --build-arg BASE_IMAGE=...]
#
# The image is tagged cube:<kind> (IMAGE overrides). Where the host's pip has a local wheel
# directory (find-links), torch comes from the host's setup as `make setup` takes it there, not from
# PyTorch's index: set TORCH_INDEX_URL to choose.
set -euo pipefail
cd "$(dirname "$0")/.."

kind=${1:?usage: docker/build.sh cpu|cuda [docker build options]}
shift
image=${IMAGE:-cube:$kind}
python=${PYTHON:-}
if [ -z "$python" ]; then
  if [ -x .venv/bin/python ]; then python=.venv/bin/python; else python=python3; fi
fi

tmp=$(mktemp -d /tmp/cube-build.XXXXXX)
"$python" docker/pip_serve.py "$tmp/build-args" "$python" &
server=$!
trap 'kill "$server" 2>/dev/null || true; wait "$server" 2>/dev/null || true; rm -rf "$tmp"' EXIT
for _ in $(seq 100); do
  [ -s "$tmp/build-args" ] && break
  kill -0 "$server" 2>/dev/null || { echo "build.sh: docker/pip_serve.py failed" >&2; exit 1; }
  sleep 0.1
done

args=()
while IFS= read -r line; do
  [ -n "$line" ] && args+=(--build-arg "$line")
done <"$tmp/build-args"
if [ "$kind" = cpu ]; then
  if [ -n "${TORCH_INDEX_URL+set}" ]; then
    args+=(--build-arg "TORCH_INDEX_URL=$TORCH_INDEX_URL")
  elif grep -q '^PIP_FIND_LINKS=' "$tmp/build-args"; then
    args+=(--build-arg "TORCH_INDEX_URL=")
  fi
fi

# without the buildx plugin, BuildKit cannot be asked for: the classic builder builds these Dockerfiles too
if ! docker buildx version >/dev/null 2>&1; then
  export DOCKER_BUILDKIT=0
fi

echo "build.sh: docker build --network host -f Dockerfile.$kind -t $image (+ the host's pip setup: $(cut -d= -f1 "$tmp/build-args" | tr '\n' ' '))"
docker build --network host -f "Dockerfile.$kind" -t "$image" "${args[@]}" "$@" .
