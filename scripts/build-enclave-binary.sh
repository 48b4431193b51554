#!/usr/bin/env bash
# Builds the enclave binary as it goes into the image: statically linked for
# x86_64-unknown-linux-musl with the pinned toolchain (rust-toolchain.toml),
# --locked, no build id, source paths remapped, SOURCE_DATE_EPOCH from the
# last commit. The same commit gives the same bytes in any directory.
#
# Usage: scripts/build-enclave-binary.sh [OUT]   (default: build/enclave)
# Prints the binary's sha256.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD
out=${1:-build/enclave}
target=x86_64-unknown-linux-musl

if ! command -v musl-gcc >/dev/null 2>&1; then
  echo "error: musl-gcc is missing (the C parts of aws-lc-rs need it): apt-get install musl-tools" >&2
  exit 2
fi
if ! rustup target list --installed | grep -qx "$target"; then
  rustup target add "$target"
fi

cargo_home=${CARGO_HOME:-$HOME/.cargo}
SOURCE_DATE_EPOCH=${SOURCE_DATE_EPOCH:-$(git log -1 --format=%ct)}
export SOURCE_DATE_EPOCH
export CARGO_INCREMENTAL=0
export CC_x86_64_unknown_linux_musl=musl-gcc
export CFLAGS_x86_64_unknown_linux_musl="-ffile-prefix-map=$root=/enclaved -ffile-prefix-map=$cargo_home=/cargo"
export RUSTFLAGS="--remap-path-prefix=$root=/enclaved --remap-path-prefix=$cargo_home=/cargo -C link-arg=-Wl,--build-id=none -C target-feature=+crt-static"

cargo build --locked --profile enclave --target "$target" -p enclave --bin enclave --target-dir target/image
mkdir -p "$(dirname "$out")"
cp "target/image/$target/enclave/enclave" "$out"
touch -d "@$SOURCE_DATE_EPOCH" "$out"
sha256sum "$out"
