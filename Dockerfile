# Build stage: the release binary (SQLite is bundled; PostgreSQL needs libpq).
FROM rust:1-bookworm AS build
RUN apt-get update && apt-get install -y --no-install-recommends libpq-dev && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY . .
RUN cargo build --release --locked && cp target/release/version-app /version-app

# Runtime stage: just the binary and the PostgreSQL client library.
FROM debian:bookworm-slim
RUN apt-get update && apt-get install -y --no-install-recommends libpq5 ca-certificates \
    && rm -rf /var/lib/apt/lists/* && useradd --system --home /var/lib/version-app version-app \
    && mkdir -p /var/lib/version-app/data && chown version-app /var/lib/version-app/data
COPY --from=build /version-app /usr/local/bin/version-app
USER version-app
WORKDIR /var/lib/version-app
EXPOSE 8080
ENV VERSION_APP_LISTEN=0.0.0.0:8080
ENTRYPOINT ["/usr/local/bin/version-app"]
CMD ["serve"]
