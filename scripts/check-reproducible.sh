#!/usr/bin/env bash
# Checks that the enclave image is reproducible: builds it twice, from two
# fresh clones of the current commit in different directories, with
# `build-docker.sh --local`, and compares the binary's sha256 and the image
# id. Exits 0 if both match, 1 naming what differs, 2 if a build fails.
# Takes about 8 minutes on 2 cores (two clean release builds).
set -euo pipefail
cd "$(dirname "$0")/.."
src=$PWD
# Both builds are of this commit, whatever happens to the checkout meanwhile.
commit=$(git rev-parse HEAD)
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

field() { sed -n "s/.*\"$1\": \"\{0,1\}\([^\",]*\)\"\{0,1\},\{0,1\}$/\1/p" "$2"; }

build() {
  local dir=$1 out=$2
  git clone --quiet "$src" "$dir"
  git -C "$dir" checkout --quiet --detach "$commit"
  echo "building in $dir" >&2
  if ! (cd "$dir" && ./build-docker.sh --local) > "$out"; then
    echo "the build in $dir failed" >&2
    exit 2
  fi
}

build "$work/a/enclaved" "$work/a.json"
build "$work/elsewhere/with/another/path/enclaved" "$work/b.json"

status=0
for key in binary.sha256 image.id binary.size; do
  one=$(field "$key" "$work/a.json")
  two=$(field "$key" "$work/b.json")
  if [ "$one" = "$two" ]; then
    echo "same $key: $one"
  else
    echo "DIFFERENT $key: $one vs $two"
    status=1
  fi
done
if [ "$status" = 0 ]; then
  echo "reproducible: commit $commit"
fi
exit "$status"
