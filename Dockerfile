FROM python:3.12-slim
# The worker runs as an unprivileged user: the installed code stays root-owned (it cannot
# rewrite itself), only the models and the state directory belong to it.
RUN groupadd --system --gid 10001 phoenix \
    && useradd --system --uid 10001 --gid phoenix --home-dir /var/lib/phoenix --shell /usr/sbin/nologin phoenix \
    && install -d -o phoenix -g phoenix /app/models /var/lib/phoenix
WORKDIR /app
# What `pip install .` builds from (pyproject's readme is README.md); .dockerignore keeps
# everything else, secrets included, out of the build context.
COPY pyproject.toml README.md ./
COPY phoenix_stream ./phoenix_stream
COPY agents ./agents
COPY tables ./tables
COPY web ./web
RUN pip install --no-cache-dir . && phoenix-stream --version
# No models in the image: the registry is compose.yaml's models volume, which its train
# job fills and retraining adds to (a new volume takes this folder's owner, phoenix).
ENV PHOENIX_MODELS_DIR=/app/models PHOENIX_STATE_DIR=/var/lib/phoenix PYTHONUNBUFFERED=1
USER phoenix:phoenix
# The Faust web port: /health, /ready, /metrics and the HTTP API (PHOENIX_WEB_PORT).
EXPOSE 6066
CMD ["phoenix-stream", "worker"]
