# Stand-in for the official NATS image on machines without a registry
# (scripts/containers/base-images.sh). Same command line as the official
# image: the compose files run `nats-server -js ...`, and the health check
# uses wget, as busybox provides it in nats:*-alpine.
FROM debian:bookworm-slim
RUN apt-get update -q && apt-get install -y -q --no-install-recommends wget \
    && apt-get clean && rm -rf /var/lib/apt/lists/*
COPY nats-server /usr/local/bin/nats-server
EXPOSE 4222 8222
CMD ["nats-server", "-js"]
