#!/usr/bin/env bash
# Builds the enclave image (one static binary, FROM scratch) reproducibly and
# writes build/docker.json with the image id and the binary's sha256.
#
#   ./build-docker.sh                     the Dockerfile, with docker buildx (BuildKit) when a
#                                         Docker engine runs, else with `buildah bud`; needs
#                                         RUST_IMAGE=rust:…@sha256:… (pinned by digest)
#   ./build-docker.sh --local             the local pinned toolchain builds the binary
#                                         (no registry needed), buildah assembles the image
#
# DEBIAN_ARCHIVE=<url> fetches the Dockerfile's Debian snapshot from a mirror
# (default: snapshot.debian.org); it must serve the same snapshot.
#
# The image is tagged enclaved:<version>. With --local and a Docker engine
# present it is also copied into Docker, where nitro-cli looks for it.
set -euo pipefail
cd "$(dirname "$0")"

mode=buildx
case "${1:-}" in
  --local) mode=local ;;
  "") ;;
  -h|--help) sed -n '2,16p' "$0"; exit 0 ;;
  *) echo "usage: $0 [--local]" >&2; exit 2 ;;
esac

version=$(sed -n 's/^version = "\(.*\)"/\1/p' enclave/Cargo.toml | head -1)
tag="enclaved:${version}"
SOURCE_DATE_EPOCH=$(git log -1 --format=%ct)
export SOURCE_DATE_EPOCH
commit=$(git rev-parse HEAD)
mkdir -p build
archive_arg=()
if [ -n "${DEBIAN_ARCHIVE:-}" ]; then
  archive_arg=(--build-arg "DEBIAN_ARCHIVE=$DEBIAN_ARCHIVE")
fi
b=(buildah --storage-driver "${STORAGE_DRIVER:-vfs}")
docker_engine=false
if command -v docker >/dev/null 2>&1 && docker info >/dev/null 2>&1; then
  docker_engine=true
fi
if [ "$mode" = buildx ] && [ "$docker_engine" = false ]; then
  if ! command -v buildah >/dev/null 2>&1; then
    echo "error: no Docker engine and no buildah: install one, or use --local" >&2
    exit 2
  fi
  mode=buildah
fi
if [ "$mode" != local ] && [[ "${RUST_IMAGE:-}" != *@sha256:* ]]; then
  echo "error: set RUST_IMAGE to the Rust builder image pinned by digest, e.g." >&2
  echo "  RUST_IMAGE=rust:1.95.0-slim-bookworm@sha256:… (docker buildx imagetools inspect rust:1.95.0-slim-bookworm)" >&2
  echo "or build with the local toolchain: $0 --local" >&2
  exit 2
fi

if [ "$mode" = local ]; then
  if ! command -v buildah >/dev/null 2>&1; then
    echo "error: --local assembles the image with buildah: apt-get install buildah" >&2
    exit 2
  fi
  scripts/build-enclave-binary.sh build/enclave >/dev/null
  container=$("${b[@]}" from scratch)
  "${b[@]}" copy --chmod 0755 "$container" build/enclave /enclave >/dev/null
  "${b[@]}" config --entrypoint '["/enclave"]' --cmd '["run","--attester","nsm"]' "$container"
  image_id=$("${b[@]}" commit --quiet --timestamp "$SOURCE_DATE_EPOCH" --rm "$container" "localhost/$tag")
  image_id="sha256:${image_id#sha256:}"
  if [ "$docker_engine" = true ]; then
    "${b[@]}" push "localhost/$tag" "docker-daemon:$tag" >/dev/null
  fi
  builder="local $(rustc --version)"
elif [ "$mode" = buildah ]; then
  "${b[@]}" bud --timestamp "$SOURCE_DATE_EPOCH" \
    --build-arg "RUST_IMAGE=$RUST_IMAGE" "${archive_arg[@]}" \
    --build-arg "SOURCE_DATE_EPOCH=$SOURCE_DATE_EPOCH" \
    --tag "localhost/$tag" .
  image_id=$("${b[@]}" inspect --format '{{.FromImageID}}' "localhost/$tag")
  image_id="sha256:${image_id#sha256:}"
  container=$("${b[@]}" from "localhost/$tag")
  mountpoint=$("${b[@]}" mount "$container")
  cp "$mountpoint/enclave" build/enclave
  "${b[@]}" umount "$container" >/dev/null
  "${b[@]}" rm "$container" >/dev/null
  builder="buildah bud, $RUST_IMAGE${DEBIAN_ARCHIVE:+, Debian from $DEBIAN_ARCHIVE}"
else
  docker buildx build \
    --build-arg "RUST_IMAGE=$RUST_IMAGE" "${archive_arg[@]}" \
    --build-arg "SOURCE_DATE_EPOCH=$SOURCE_DATE_EPOCH" \
    --output "type=docker,name=$tag,rewrite-timestamp=true" \
    --metadata-file build/buildx-metadata.json \
    .
  image_id=$(docker image inspect --format '{{.Id}}' "$tag")
  container=$(docker create "$tag")
  docker cp "$container:/enclave" build/enclave
  docker rm "$container" >/dev/null
  builder="docker buildx, $RUST_IMAGE${DEBIAN_ARCHIVE:+, Debian from $DEBIAN_ARCHIVE}"
fi

binary_sha256=$(sha256sum build/enclave | cut -d' ' -f1)
size=$(stat -c %s build/enclave)
cat > build/docker.json <<JSON
{
  "image.name": "$tag",
  "image.id": "$image_id",
  "binary.sha256": "$binary_sha256",
  "binary.size": $size,
  "source.commit": "$commit",
  "source_date_epoch": $SOURCE_DATE_EPOCH,
  "builder": "$builder"
}
JSON
cat build/docker.json
