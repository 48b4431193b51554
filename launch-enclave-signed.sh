#!/usr/bin/env bash
# Starts the enclave on this EC2 instance, signed by its launcher:
#
#   1. the instance id from the instance metadata service (IMDSv2), or
#      --instance-id;
#   2. the launcher signs the kind 63796 instance signature through NIP-46
#      (`parent sign-instance`) → instance/instance.json, kept while it is
#      valid for this instance and launcher;
#   3. nitro-cli run-enclave with build/enclave.eif.
#
# Start the parent first (./launch-parent.sh); the enclave waits for it.
#
# Usage: ./launch-enclave-signed.sh <launcher-npub> (--bunker <url> | --nostrconnect-relay <url>)
#          [--mode prod|dev] [--instance-id ID] [--cpus N] [--memory MiB] [--debug-mode]
set -euo pipefail
cd "$(dirname "$0")"

usage() { sed -n '2,15p' "$0"; exit 2; }
[ $# -ge 1 ] || usage
launcher=$1; shift
mode=prod
cpus=2
memory=1024
signer=()
instance=()
debug=()
while [ $# -gt 0 ]; do
  case "$1" in
    --bunker|--nostrconnect-relay) [ $# -ge 2 ] || usage; signer+=("$1" "$2"); shift 2 ;;
    --mode) [ $# -ge 2 ] || usage; mode=$2; shift 2 ;;
    --instance-id) [ $# -ge 2 ] || usage; instance=(--instance-id "$2"); shift 2 ;;
    --cpus) [ $# -ge 2 ] || usage; cpus=$2; shift 2 ;;
    --memory) [ $# -ge 2 ] || usage; memory=$2; shift 2 ;;
    --debug-mode) debug=(--debug-mode); shift ;;
    *) usage ;;
  esac
done
[ ${#signer[@]} -gt 0 ] || usage
case "$launcher" in npub1*) ;; *) echo "error: $launcher is not an npub" >&2; exit 2 ;; esac

if ! command -v nitro-cli >/dev/null 2>&1; then
  echo "error: nitro-cli is not installed (see OPERATIONS.md). Nothing was changed." >&2
  exit 2
fi
if [ ! -f build/enclave.eif ]; then
  echo "error: build/enclave.eif is missing: run ./build-enclave-signed.sh first" >&2
  exit 2
fi

cargo build --release --locked -p parent
target/release/parent sign-instance --launcher "$launcher" --mode "$mode" \
  ${instance[@]+"${instance[@]}"} "${signer[@]}" --out instance/instance.json

# A parent installed as a service re-reads its files and relays on restart.
if systemctl cat enclaved-parent.service >/dev/null 2>&1; then
  systemctl restart enclaved-parent.service
fi

nitro-cli run-enclave --eif-path build/enclave.eif --cpu-count "$cpus" --memory "$memory" \
  ${debug[@]+"${debug[@]}"}
nitro-cli describe-enclaves
