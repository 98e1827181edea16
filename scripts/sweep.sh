#!/usr/bin/env bash
# A validation-only sweep of DVC experiments in a profile's kept workspace, ranked by `python -m harness compare`.
#
#   scripts/sweep.sh profiles/translation.yaml /tmp/ws-translation -S 'cube.hidden=16,32,64' -S 'cube.steps=5,10,20'
#
# The workspace is the one `python -m harness profile <profile> --keep <workspace>` ran (made here when missing).
# Each grid point runs once, under the pipeline seed only and up to `evaluate` (the experiments are chosen on
# validation MRR; their test columns are for reading), one at a time so the timings stay honest; the ranked table
# goes to reports/<profile>/sweep.md. The chosen settings then get a profile of their own and a full run with every
# seed, where the paired verdicts are made.
set -euo pipefail
here="$(cd "$(dirname "$0")/.." && pwd)"
python="${PYTHON:-$here/.venv/bin/python}"
[ $# -ge 3 ] || { echo "usage: scripts/sweep.sh PROFILE WORKSPACE -S key=a,b [-S ...]" >&2; exit 2; }
profile="$1" workspace="$2"
shift 2
name="$(basename "$profile" .yaml)"
if [ ! -f "$workspace/dvc.lock" ]; then
  "$python" -m harness.workflows.profile "$profile" --keep "$workspace"
fi
cd "$workspace"
export PATH="$(dirname "$python"):$PATH" HF_HUB_OFFLINE=1
git add -A && git commit -qm "profile $name: before the sweep" || true
"$python" -m harness exp run --queue -S 'quality.extra_seeds=[]' "$@" evaluate
dvc queue start -j 1
# The status is read whole (`grep -q` closing the pipe early would fail the pipeline under pipefail). A queue worker
# has been seen to stop with experiments still queued (those queued while it ran): a new one is started then.
while sleep 20 && status="$(dvc queue status)" && grep -Eq 'Queued|Running' <<<"$status"; do
  if grep -q 'Worker status: 0 active' <<<"$status"; then dvc queue start -j 1; fi
done
echo "$status"
if grep -q Failed <<<"$status"; then
  echo "sweep: an experiment failed; its log: dvc queue logs <task>" >&2
  exit 1
fi
mkdir -p "$here/reports/$name"
{
  echo "# Sweep on profile \`$name\` (validation only, pipeline seed $(sed -n 's/^seed: //p' params.yaml))"
  echo
  echo "\`scripts/sweep.sh $profile <workspace> $*\`, run $(date -u +%Y-%m-%d) from revision $(git -C "$here" rev-parse --short HEAD)."
  echo
  "$python" -m harness compare
} > "$here/reports/$name/sweep.md"
echo "sweep: $here/reports/$name/sweep.md"
