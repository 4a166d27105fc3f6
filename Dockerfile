# The image users build: `docker build -t harven-watchdog .`
#
# Stage 1 builds a static binary (glibc, +crt-static: no libc needed at run time). Stage 2 is `scratch`
# with only that binary, the CA bundle (rustls needs roots even to build an HTTP client) and an empty
# data directory owned by the unprivileged user. deploy/Dockerfile.prebuilt is the same stage 2 over a
# binary built on the host (scripts/build-image.sh), for machines that cannot pull a Rust image.
FROM rust:1-bookworm AS build
WORKDIR /src
COPY . .
RUN target="$(rustc -vV | sed -n 's/^host: //p')" \
 && RUSTFLAGS='-C target-feature=+crt-static' cargo build --release --locked --target "$target" \
 && mkdir -p /out/data \
 && cp "target/$target/release/harven-watchdog" /out/harven-watchdog

FROM scratch
COPY --from=build /etc/ssl/certs/ca-certificates.crt /etc/ssl/certs/ca-certificates.crt
COPY --from=build /out/harven-watchdog /usr/local/bin/harven-watchdog
COPY --from=build --chown=65532:65532 /out/data /data
ENV HARVEN_WATCHDOG__STORE__PATH=/data/watchdog.db
# Non-root. Reading the Docker socket needs its group: `--group-add "$(stat -c %g /var/run/docker.sock)"`
# (compose: `group_add`), or run as root where the socket's group cannot be granted.
USER 65532:65532
EXPOSE 9464
VOLUME ["/data"]
HEALTHCHECK --interval=30s --timeout=5s --start-period=10s --retries=3 \
  CMD ["/usr/local/bin/harven-watchdog", "healthcheck"]
ENTRYPOINT ["/usr/local/bin/harven-watchdog"]
CMD ["run"]
