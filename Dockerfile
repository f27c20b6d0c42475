# One image for every instance. Embedded mode needs a volume at /data; shared mode needs
# RPLACE_REDIS_URL, RPLACE_DATABASE_URL and RPLACE_COOKIE_KEY and keeps no state at all.
FROM rust:1-bookworm AS build
WORKDIR /src
COPY . .
RUN cargo build --release --locked -p rplace && cp target/release/rplace /rplace

FROM debian:bookworm-slim
RUN useradd --system --uid 10001 rplace && mkdir /data && chown rplace /data
COPY --from=build /rplace /usr/local/bin/rplace
USER rplace
ENV RPLACE_LISTEN=0.0.0.0:8080 RPLACE_DATA_DIR=/data RPLACE_LOG_FORMAT=json
EXPOSE 8080
STOPSIGNAL SIGTERM
ENTRYPOINT ["/usr/local/bin/rplace"]
