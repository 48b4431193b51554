# syntax=docker/dockerfile:1
# The enclave image: one statically linked `enclave` binary and nothing else.
# Build it with ./build-docker.sh, which passes the pinned builder image and
# SOURCE_DATE_EPOCH and rewrites timestamps; see REPRODUCIBILITY.md.

# The Rust image the binary is built in, pinned by digest (build-docker.sh
# refuses a tag without one), e.g.
#   rust:1.95.0-slim-bookworm@sha256:<digest from `docker buildx imagetools inspect`>
ARG RUST_IMAGE
# Debian packages (musl-tools) come from a dated snapshot, never the live archive.
ARG DEBIAN_SNAPSHOT=20261101T000000Z

FROM ${RUST_IMAGE} AS build
ARG DEBIAN_SNAPSHOT
# Where that snapshot is fetched from. A mirror must serve the same
# snapshot, or the image will not be the same.
ARG DEBIAN_ARCHIVE=http://snapshot.debian.org/archive/debian/${DEBIAN_SNAPSHOT}
ARG SOURCE_DATE_EPOCH
RUN echo "deb [check-valid-until=no] ${DEBIAN_ARCHIVE} bookworm main" > /etc/apt/sources.list \
 && rm -f /etc/apt/sources.list.d/* \
 && apt-get update \
 && apt-get install -y --no-install-recommends musl-tools git \
 && rm -rf /var/lib/apt/lists/*
WORKDIR /enclaved
COPY . .
RUN SOURCE_DATE_EPOCH=${SOURCE_DATE_EPOCH} scripts/build-enclave-binary.sh /out/enclave

FROM scratch
COPY --from=build /out/enclave /enclave
ENTRYPOINT ["/enclave"]
CMD ["run", "--attester", "nsm"]
