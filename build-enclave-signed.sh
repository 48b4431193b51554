#!/usr/bin/env bash
# Turns the image from ./build-docker.sh into a signed enclave image file and
# has the builder sign it, on an EC2 instance with nitro-cli:
#
#   1. a one-time P-384 signing key and certificate naming the builder
#      (O=Nostr, OU=<npub>), made by `parent signing-cert`;
#   2. nitro-cli build-enclave → build/enclave.eif and build/pcrs.json (also
#      copied to ./pcrs.json, the release's expected measurements);
#   3. the key is destroyed; PCR8 is checked against the certificate;
#   4. the builder signs the kind 63795 build signature through NIP-46
#      (`parent sign-build`) → build/build.json.
#
# Usage: ./build-enclave-signed.sh <builder-npub> (--bunker <url> | --nostrconnect-relay <url>) [--mode prod|dev]
set -euo pipefail
cd "$(dirname "$0")"

usage() { sed -n '2,13p' "$0"; exit 2; }
[ $# -ge 1 ] || usage
builder=$1; shift
mode=prod
signer=()
while [ $# -gt 0 ]; do
  case "$1" in
    --bunker|--nostrconnect-relay) [ $# -ge 2 ] || usage; signer+=("$1" "$2"); shift 2 ;;
    --mode) [ $# -ge 2 ] || usage; mode=$2; shift 2 ;;
    *) usage ;;
  esac
done
[ ${#signer[@]} -gt 0 ] || usage
case "$builder" in npub1*) ;; *) echo "error: $builder is not an npub" >&2; exit 2 ;; esac

# Before touching anything.
if ! command -v nitro-cli >/dev/null 2>&1; then
  echo "error: nitro-cli is not installed. Run this on an EC2 instance with Nitro Enclaves" >&2
  echo "enabled and aws-nitro-enclaves-cli installed (see OPERATIONS.md). Nothing was changed." >&2
  exit 2
fi
if [ ! -f build/docker.json ]; then
  echo "error: build/docker.json is missing: run ./build-docker.sh first" >&2
  exit 2
fi
image=$(sed -n 's/.*"image.name": "\([^"]*\)".*/\1/p' build/docker.json)

cargo build --release --locked -p parent -p verifier
parent=target/release/parent
verifier=target/release/verifier

keydir=$(mktemp -d /dev/shm/enclaved-signing.XXXXXX 2>/dev/null || mktemp -d)
destroy_key() {
  if [ -f "$keydir/key.pem" ]; then
    shred -u "$keydir/key.pem" 2>/dev/null || rm -f "$keydir/key.pem"
  fi
  rmdir "$keydir" 2>/dev/null || true
}
trap destroy_key EXIT

rm -f build/signing-cert.pem build/enclave.eif build/pcrs.json build/build.json
"$parent" signing-cert --builder "$builder" --cert-out build/signing-cert.pem --key-out "$keydir/key.pem"
nitro-cli build-enclave \
  --docker-uri "$image" \
  --output-file build/enclave.eif \
  --signing-certificate build/signing-cert.pem \
  --private-key "$keydir/key.pem" > build/pcrs.json
destroy_key

pcr8_cert=$("$verifier" pcr cert build/signing-cert.pem)
pcr8_built=$(sed -n 's/.*"PCR8": "\([0-9a-f]*\)".*/\1/p' build/pcrs.json)
if [ "$pcr8_cert" != "$pcr8_built" ]; then
  echo "error: PCR8 of the image ($pcr8_built) is not that of the certificate ($pcr8_cert)" >&2
  exit 1
fi
cp build/pcrs.json pcrs.json

"$parent" sign-build --cert build/signing-cert.pem --pcrs build/pcrs.json --mode "$mode" "${signer[@]}" --out build/build.json
echo "built build/enclave.eif, signed by $builder; measurements in pcrs.json"
