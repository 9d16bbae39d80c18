# syntax=docker/dockerfile:1
# Noom in a container: build with Rust, run as a non-root user on Debian slim,
# state in the /data volume. Walk-through (and why --network host): docs/deploy.md.
#
#   docker build -t noom .
#   docker run -d --name noom --network host -v noom-data:/data \
#     -v /etc/noom:/etc/noom:ro noom --config /etc/noom/noom.toml

FROM rust:1.94-bookworm AS build
WORKDIR /src
COPY . .
RUN cargo build --release --locked --bin noom

FROM debian:bookworm-slim
COPY --from=build /src/target/release/noom /usr/local/bin/noom
# Ports 80 and 443 without root: a file capability on the binary (Docker grants
# NET_BIND_SERVICE by default; --security-opt no-new-privileges disables it).
RUN apt-get update \
    && apt-get install -y --no-install-recommends libcap2-bin \
    && setcap cap_net_bind_service=+ep /usr/local/bin/noom \
    && apt-get purge -y libcap2-bin \
    && apt-get autoremove -y \
    && rm -rf /var/lib/apt/lists/* \
    && useradd --system --uid 10001 --user-group --home-dir /data --shell /usr/sbin/nologin noom \
    && mkdir -p /data \
    && chown noom:noom /data \
    && chmod 0700 /data
USER noom
WORKDIR /data
VOLUME ["/data"]
EXPOSE 3000/tcp 443/tcp 80/tcp 3478/udp 3478/tcp 5349/tcp 3479/udp
STOPSIGNAL SIGTERM
ENTRYPOINT ["/usr/local/bin/noom"]
# Without arguments: plain HTTP on 3000, data in /data. With `--config FILE`
# (these flags are then gone), the file says everything: data_dir = "/data".
CMD ["--http", "0.0.0.0:3000", "--data-dir", "/data"]
