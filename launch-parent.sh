#!/usr/bin/env bash
# Runs the parent on the EC2 host: the SOCKS5 proxy (vsock 1080) and the
# metadata server (vsock 2080) the enclave talks to.
#
#   ./launch-parent.sh [--prod]             in the foreground
#   ./launch-parent.sh --install [--prod]   as the systemd service enclaved-parent
#                                           (restarts on failure, logs to the journal)
#
# It serves build/build.json (./build-enclave-signed.sh),
# instance/instance.json (./launch-enclave-signed.sh) and the maintainers'
# release signatures in release/<version>/ (parent sign-release), where
# <version> is the enclave crate's. A prod enclave refuses to start
# without enough of them (release-policy.json).
set -euo pipefail
cd "$(dirname "$0")"

install=false
args=()
for a in "$@"; do
  case "$a" in
    --install) install=true ;;
    --prod) args+=(--prod) ;;
    *) sed -n '2,14p' "$0"; exit 2 ;;
  esac
done

cargo build --release --locked -p parent
dir=$PWD
version=$(sed -n 's/^version = "\(.*\)"$/\1/p' enclave/Cargo.toml | head -1)
if [ -d "release/$version" ]; then
  args+=(--release-dir "$dir/release/$version")
else
  echo "warning: no release/$version/: no release signatures to serve; a prod enclave will refuse to start" >&2
fi
cmd=("$dir/target/release/parent" run --build "$dir/build/build.json" --instance "$dir/instance/instance.json" ${args[@]+"${args[@]}"})

if [ "$install" = false ]; then
  exec "${cmd[@]}"
fi

unit=/etc/systemd/system/enclaved-parent.service
sed -e "s|@DIR@|$dir|g" -e "s|@EXEC@|${cmd[*]}|g" systemd/enclaved-parent.service > "$unit.tmp"
mv "$unit.tmp" "$unit"
systemctl daemon-reload
systemctl enable --now enclaved-parent.service
systemctl --no-pager status enclaved-parent.service || true
echo "logs: journalctl -u enclaved-parent -f"
