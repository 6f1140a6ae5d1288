# psagate container image: a static binary on distroless, run as non-root.
#
#   docker build --build-arg VERSION=$(git describe --tags --always) \
#                --build-arg REVISION=$(git rev-parse HEAD) -t psagate .
#   docker run -d --name psagate -p 25:2525 -p 9725:9725 \
#       -v psagate-state:/var/lib/psagate \
#       -v /srv/psagate/psagate.toml:/etc/psagate/psagate.toml:ro \
#       -v /srv/psagate/rules:/etc/psagate/rules:ro \
#       --env-file /srv/psagate/secrets.env psagate
#
# README.md ("Install", "Container") has the details and a compose file.

# The Go toolchain psagate's go.mod asks for.
ARG GO_VERSION=1.26.8

FROM golang:${GO_VERSION} AS build
WORKDIR /src
# Modules first: a source edit does not download them again.
COPY go.mod go.sum ./
RUN go mod download
COPY . .
ARG VERSION=devel
ARG REVISION=
# Static (CGO_ENABLED=0: nothing to load from a distroless /lib) and
# reproducible, as `make dist` builds it.
RUN CGO_ENABLED=0 go build -trimpath -buildvcs=false \
      -ldflags "-s -w -buildid= -X psagate/internal/version.version=${VERSION} -X psagate/internal/version.revision=${REVISION}" \
      -o /out/usr/bin/psagate ./cmd/psagate
# The image's default config: the example with absolute paths, and listening
# on every address of the container (SMTP on 2525: the non-root user cannot
# bind 25, publish it with -p 25:2525). Docker's bridge networks are added to
# allowed_networks for connections proxied from the host. Every replacement
# is checked, and so is the result, so a change to the example fails the
# build instead of shipping a config that does not start.
RUN set -eu; mkdir -p /out/etc/psagate /out/var/lib/psagate; \
    cp -r rules /out/etc/psagate/rules; \
    sed -e 's|^listen = "127.0.0.1:2525"|listen = "0.0.0.0:2525"|' \
        -e 's|^listen = "127.0.0.1:9725"|listen = "0.0.0.0:9725"|' \
        -e 's|^path = "data/psagate.db"|path = "/var/lib/psagate/psagate.db"|' \
        -e 's|^dir = "rules"|dir = "/etc/psagate/rules"|' \
        -e 's|^\(allowed_networks = \[.*\)\]|\1, "172.16.0.0/12"]|' \
        configs/example.toml > /out/etc/psagate/psagate.toml; \
    for want in 'listen = "0.0.0.0:2525"' 'listen = "0.0.0.0:9725"' 'path = "/var/lib/psagate/psagate.db"' \
                'dir = "/etc/psagate/rules"' '"172.16.0.0/12"]'; do \
      grep -qF "$want" /out/etc/psagate/psagate.toml || { echo "configs/example.toml changed: no $want"; exit 1; }; \
    done; \
    mkdir -p /etc/psagate && cp -r /out/etc/psagate/rules /etc/psagate/ && \
    /out/usr/bin/psagate check -config /out/etc/psagate/psagate.toml

# distroless/static: CA certificates (the PSA APIs are HTTPS), tzdata,
# /etc/passwd with "nonroot" (65532), no shell, no package manager.
FROM gcr.io/distroless/static-debian12:nonroot
COPY --from=build /out/usr/bin/psagate /usr/bin/psagate
COPY --from=build /out/etc/psagate /etc/psagate
COPY --from=build --chown=65532:65532 /out/var/lib/psagate /var/lib/psagate
USER 65532:65532
# The database (spool, outbox, incidents): keep it across container updates.
VOLUME ["/var/lib/psagate"]
EXPOSE 2525 9725
# No curl in the image: psagate asks its own /healthz.
HEALTHCHECK --interval=30s --timeout=5s --start-period=15s --retries=3 \
    CMD ["/usr/bin/psagate", "healthcheck", "-config", "/etc/psagate/psagate.toml"]
# SIGTERM lets SMTP transfers finish ([smtp] shutdown_timeout, 30s): give
# `docker stop` more than its default 10s (compose: stop_grace_period).
STOPSIGNAL SIGTERM
ENTRYPOINT ["/usr/bin/psagate"]
CMD ["serve", "-config", "/etc/psagate/psagate.toml"]
