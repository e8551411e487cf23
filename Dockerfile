# authshim: run `authshim serve` as a non-root user on a slim Python base.
#
#   docker build -t authshim .
#   docker run -d -p 8080:8080 -e AUTHSHIM_SECRET \
#       -v "$PWD/authshim.toml:/etc/authshim/authshim.toml:ro" -v authshim-data:/data authshim
#
# The config is read from /etc/authshim/authshim.toml ($AUTHSHIM_CONFIG); a SQLite store and a
# mail folder belong under /data (e.g. url = "sqlite:////data/authshim.db"), a named volume
# the non-root user owns. A bind mount at /data must be writable by uid 10001. authshim listens
# on all the container's addresses ($AUTHSHIM_LISTEN, which replaces server.listen); its
# upstream must be an address the container can reach, never 127.0.0.1 (the container itself).
# examples/compose/ runs authshim, PostgreSQL and a legacy app together.
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 \
    AUTHSHIM_CONFIG=/etc/authshim/authshim.toml \
    AUTHSHIM_LISTEN=0.0.0.0:8080
WORKDIR /app
COPY pyproject.toml README.md LICENSE ./
COPY proxy ./proxy
COPY store ./store
RUN pip install --no-cache-dir '.[postgres]' \
    && useradd --system --uid 10001 --home-dir /data authshim \
    && mkdir -p /data /etc/authshim && chown authshim /data

USER authshim
WORKDIR /data
VOLUME /data
EXPOSE 8080
# The health endpoint on the port AUTHSHIM_LISTEN names (no curl in the slim image).
HEALTHCHECK --interval=15s --timeout=5s --start-period=20s --retries=3 \
    CMD ["python", "-c", "import os, urllib.request; urllib.request.urlopen('http://127.0.0.1:%s/.authshim/health' % os.environ['AUTHSHIM_LISTEN'].rpartition(':')[2], timeout=4)"]
CMD ["authshim", "serve"]
