#!/usr/bin/env bash
# Print the base image both Dockerfiles build on, making one when none can be pulled:
# BASE_IMAGE if set, else python:3.11-slim-bookworm when it is present or can be pulled, else the
# Debian bookworm base docker/make-base.sh makes (debootstrap from the configured mirror).
# Progress goes to stderr; stdout is the image name alone.
#
#   base=$(docker/base.sh)
set -euo pipefail
cd "$(dirname "$0")/.."

if [ -n "${BASE_IMAGE:-}" ]; then
  echo "$BASE_IMAGE"
  exit 0
fi
if docker image inspect python:3.11-slim-bookworm >/dev/null 2>&1 \
   || timeout 60 docker pull -q python:3.11-slim-bookworm >/dev/null 2>&1; then
  echo python:3.11-slim-bookworm
  exit 0
fi
echo "base.sh: python:3.11-slim-bookworm cannot be pulled; making a Debian base with docker/make-base.sh" >&2
docker/make-base.sh cube-bench-base:bookworm >&2
echo cube-bench-base:bookworm
