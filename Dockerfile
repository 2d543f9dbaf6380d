# The orchestrator and the bundled mock provers, one image for every role:
#
#   docker build -t ethproofs-orchestrator:local .
#   docker run --rm ethproofs-orchestrator:local prover --help
#
# Builds natively for the platform at hand (amd64, arm64): both base images
# are multi-platform. Works with BuildKit and with the legacy builder.
#
# Build args:
#   RUST_IMAGE     the builder's base (default rust:1-bookworm)
#   RUNTIME_IMAGE  the runtime's base (default debian:bookworm-slim)
#   BINARIES       "source" (default): compile the workspace in the builder.
#                  A directory of the build context holding orchestrator,
#                  mock-prover and mock-multistep-prover: take those instead
#                  (the container test uses the binaries it already built on
#                  the host; any Debian-based RUST_IMAGE will do then).
#
# Layout: /usr/local/bin/orchestrator (the ENTRYPOINT, under tini so helper
# processes are reaped), the mock provers in /provers, plus stand-ins named
# like real zkVMs (/provers/sp1, risc0, zisk: the mock prover under that name;
# /provers/multistep: the multistep mock). Mount a real prover over one of
# them, or derive an image FROM this one (README, "Containers").

ARG RUST_IMAGE=rust:1-bookworm
ARG RUNTIME_IMAGE=debian:bookworm-slim

FROM ${RUST_IMAGE} AS build
ARG BINARIES=source
WORKDIR /src
COPY . .
RUN set -eu; \
    mkdir -p /out; \
    if [ "$BINARIES" = source ]; then \
        CARGO_PROFILE_RELEASE_STRIP=true cargo build --release --locked --workspace --bins; \
        dir=target/release; \
    else \
        dir="$BINARIES"; \
    fi; \
    for bin in orchestrator mock-prover mock-multistep-prover; do \
        cp "$dir/$bin" /out/; \
    done

FROM ${RUNTIME_IMAGE}
RUN set -eu; \
    apt-get update -q; \
    apt-get install -y -q --no-install-recommends ca-certificates tini; \
    apt-get clean; \
    rm -rf /var/lib/apt/lists/*; \
    useradd --system --uid 10001 --user-group --create-home \
        --home-dir /var/lib/orchestrator orchestrator; \
    mkdir /provers; \
    for name in sp1 risc0 zisk; do \
        printf '#!/bin/sh\n# Stand-in for a %s prover: the mock prover under that name.\nMOCK_PROVER_NAME="${MOCK_PROVER_NAME:-%s}" exec /provers/mock-prover "$@"\n' \
            "$name" "$name" > "/provers/$name"; \
    done; \
    printf '#!/bin/sh\n# Stand-in for a multistep prover: partition, prove a step, aggregate.\nexec /provers/mock-multistep-prover "$@"\n' \
        > /provers/multistep; \
    chmod 755 /provers/*; \
    ln -s /provers/mock-prover /provers/mock-multistep-prover /usr/local/bin/
COPY --from=build /out/orchestrator /usr/local/bin/orchestrator
COPY --from=build /out/mock-prover /out/mock-multistep-prover /provers/
ENV PATH=/provers:$PATH
USER orchestrator
WORKDIR /var/lib/orchestrator
ENTRYPOINT ["/usr/bin/tini", "--", "/usr/local/bin/orchestrator"]
CMD ["--help"]
