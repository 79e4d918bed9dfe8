# One image for the API (`loom serve`) and workers (`loom worker`).
FROM python:3.11-slim AS build
WORKDIR /src
RUN python -m venv /opt/loom
COPY pyproject.toml README.md ./
COPY schema schema
COPY resolvers resolvers
COPY engine engine
COPY storage storage
COPY server server
# The server's dependencies only (no dev extras, no test plugin).
RUN /opt/loom/bin/pip install --no-cache-dir .

FROM python:3.11-slim
RUN useradd --create-home --uid 10001 loom && mkdir -p /data && chown loom /data
# Embedded mode's SQLite file and credential key live here: kept apart from the container.
VOLUME /data
COPY --from=build /opt/loom /opt/loom
ENV PATH=/opt/loom/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    LOOM_DATA_DIR=/data \
    LOOM_HOST=0.0.0.0 \
    LOOM_PORT=8000
USER loom
WORKDIR /home/loom
EXPOSE 8000
HEALTHCHECK --interval=15s --timeout=3s --start-period=20s --retries=3 \
  CMD python -c "import urllib.request, os; urllib.request.urlopen(f'http://127.0.0.1:{os.environ.get(\"LOOM_PORT\", \"8000\")}/healthz', timeout=2)" || exit 1
CMD ["loom", "serve"]
