#!/bin/sh
# Make the repository mounted at the working directory usable by git and DVC, then run the command.
#  - HOME: an arbitrary --user has no home; a private temporary one is made (git and DVC keep config there)
#  - safe.directory: the mounted repository belongs to a host user, not to this container's user
#  - a git identity when none is set, in the container's global config (`dvc exp run` commits)
# Nothing is written into the repository's own .git/config.
set -eu

if [ -z "${HOME:-}" ] || [ "${HOME}" = "/" ] || ! [ -w "${HOME}" ]; then
  HOME=$(mktemp -d /tmp/home.XXXXXX)
  export HOME
fi

repo=""
dir=$(pwd -P)
while :; do
  if [ -e "$dir/.git" ]; then repo=$dir; break; fi
  [ "$dir" = "/" ] && break
  dir=$(dirname "$dir")
done

if [ -z "$repo" ]; then
  echo "cube-entrypoint: note: $(pwd) is not inside a git repository; mount yours with -v \"\$PWD:/work\"" >&2
else
  git config --global --get-all safe.directory 2>/dev/null | grep -qxF "$repo" \
    || git config --global --add safe.directory "$repo"
  if ! [ -w "$repo" ] || ! [ -w "$repo/.git" ]; then
    owner=$(stat -c %u:%g "$repo")
    echo "cube-entrypoint: error: the mounted repository $repo (owner $owner) is not writable by" \
         "uid $(id -u); run the container as its owner, e.g. docker run --user \"\$(stat -c %u:%g .)\" ..." \
         "(or \"\$(id -u):\$(id -g)\" from the repository's owner); see README, Containers" >&2
    exit 1
  fi
  if ! git -C "$repo" config user.email >/dev/null 2>&1; then
    git config --global user.email "cube-bench@localhost"
  fi
  if ! git -C "$repo" config user.name >/dev/null 2>&1; then
    git config --global user.name "Cube Bench (container)"
  fi
fi

if [ "$#" -eq 0 ]; then
  set -- dvc repro
fi
exec "$@"
