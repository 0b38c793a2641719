# syntax=docker/dockerfile:1
# fedkey container image: a Rust build stage, then a distroless runtime with only the
# stripped binary, run as a non-root user. The root filesystem can be read-only: fedkey
# writes only under its data directory, /var/lib/fedkey, a volume. docs/packaging.md
# describes every step below (scripts/check-packaging.sh checks that it still does).

FROM docker.io/library/rust:1.95-slim-trixie AS build
WORKDIR /src
COPY . .
RUN --mount=type=cache,target=/usr/local/cargo/registry --mount=type=cache,target=/src/target cargo build --release --locked --bin fedkey && cp target/release/fedkey /fedkey
RUN mkdir -p /data && chown 65532:65532 /data && chmod 0700 /data

FROM gcr.io/distroless/cc-debian13:nonroot
COPY --from=build /fedkey /usr/local/bin/fedkey
COPY --from=build --chown=65532:65532 /data /var/lib/fedkey
USER 65532:65532
ENV FEDKEY_DATA_DIR=/var/lib/fedkey FEDKEY_LISTEN=0.0.0.0:8080 FEDKEY_LOG_FORMAT=json
VOLUME ["/var/lib/fedkey"]
EXPOSE 8080
HEALTHCHECK --interval=30s --timeout=5s --start-period=20s --retries=3 CMD ["/usr/local/bin/fedkey", "health-probe"]
ENTRYPOINT ["/usr/local/bin/fedkey"]
CMD ["serve"]
