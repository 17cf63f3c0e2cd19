FROM python:3.12-slim
# The worker runs as an unprivileged user: the installed code stays root-owned (it cannot
# rewrite itself), only the models and the state directory belong to it.
RUN groupadd --system --gid 10001 phoenix \
    && useradd --system --uid 10001 --gid phoenix --home-dir /var/lib/phoenix --shell /usr/sbin/nologin phoenix \
    && install -d -o phoenix -g phoenix /app/models /var/lib/phoenix
WORKDIR /app
COPY pyproject.toml README.md ./
COPY phoenix_stream ./phoenix_stream
COPY agents ./agents
COPY tables ./tables
COPY web ./web
COPY scripts ./scripts
RUN pip install --no-cache-dir .
ENV PHOENIX_MODELS_DIR=/app/models PHOENIX_STATE_DIR=/var/lib/phoenix
USER phoenix:phoenix
RUN phoenix-stream train --models-dir /app/models
CMD ["phoenix-stream", "worker"]
