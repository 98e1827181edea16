#!/usr/bin/env bash
# A stand-in for the default base image where no registry can be reached but a Debian mirror can:
# debootstrap a minimal Debian with python3 (3.11 on bookworm), venv, git and gcc, and `docker import` it.
#
#   docker/make-base.sh [TAG]          (default cube-bench-base:bookworm; needs root, debootstrap, docker)
#   docker build -f Dockerfile.cpu --build-arg BASE_IMAGE=cube-bench-base:bookworm ...
#
# The mirror is DEBIAN_MIRROR, else the first Debian archive in this machine's apt sources.
set -euo pipefail

tag=${1:-cube-bench-base:bookworm}
suite=${DEBIAN_SUITE:-bookworm}

mirror=${DEBIAN_MIRROR:-}
if [ -z "$mirror" ]; then
  mirror=$(cat /etc/apt/sources.list /etc/apt/sources.list.d/*.list /etc/apt/sources.list.d/*.sources 2>/dev/null \
    | grep -oE '(https?://[^ ]*/debian)/?( |$)' | grep -v -- '-security' | head -n1 | tr -d ' ' || true)
fi
mirror=${mirror:-http://deb.debian.org/debian}

if docker image inspect "$tag" >/dev/null 2>&1 && [ -z "${REBUILD_BASE:-}" ]; then
  echo "make-base: $tag exists (REBUILD_BASE=1 to make it again)"
  exit 0
fi

work=$(mktemp -d /tmp/cube-base.XXXXXX)
trap 'rm -rf "$work"' EXIT
echo "make-base: debootstrap $suite from $mirror"
debootstrap --variant=minbase --include=python3,python3-venv,ca-certificates,git,gcc,libc6-dev \
  "$suite" "$work/root" "$mirror" >"$work/debootstrap.log" 2>&1 \
  || { tail -n 30 "$work/debootstrap.log" >&2; echo "make-base: debootstrap failed" >&2; exit 1; }
rm -rf "$work/root/var/cache/apt/archives/"*.deb "$work/root/var/lib/apt/lists/"*
tar -C "$work/root" -c . | docker import \
  --change 'ENV LANG=C.UTF-8' --change 'CMD ["/bin/bash"]' - "$tag" >/dev/null
echo "make-base: imported $tag ($(docker image inspect -f '{{.Size}}' "$tag" | awk '{printf "%.0f MB", $1/1e6}'))"
