# Stand-in for the official rust:1-bookworm image on machines without a
# registry (scripts/containers/base-images.sh rust): Debian 12's rustc-web and
# cargo-web (1.96, from bookworm-updates/bookworm-security) and a C toolchain.
# The host's extra CA certificates (/usr/local/share/ca-certificates, e.g. an
# egress proxy's) are trusted too, so cargo reaches crates.io as the host does.
FROM debian:bookworm-slim
RUN apt-get update -q && apt-get install -y -q --no-install-recommends \
        rustc-web cargo-web gcc g++ libc6-dev make cmake perl pkg-config ca-certificates \
    && apt-get clean && rm -rf /var/lib/apt/lists/*
COPY ca/ /usr/local/share/ca-certificates/
RUN update-ca-certificates
