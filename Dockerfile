# authshim: run `authshim serve` as a non-root user on a slim Python base.
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1
WORKDIR /app
COPY pyproject.toml README.md ./
COPY proxy ./proxy
COPY store ./store
RUN pip install --no-cache-dir '.[postgres]' \
    && useradd --system --uid 10001 --home-dir /data authshim \
    && mkdir -p /data && chown authshim /data

USER authshim
WORKDIR /data
EXPOSE 8080
# Mount the config at /data/authshim.toml; with SQLite, keep /data on a volume.
CMD ["authshim", "serve", "--config", "/data/authshim.toml"]
