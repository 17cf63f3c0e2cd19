FROM python:3.12-slim
WORKDIR /app
COPY pyproject.toml README.md ./
COPY phoenix_stream ./phoenix_stream
COPY agents ./agents
COPY tables ./tables
COPY web ./web
COPY scripts ./scripts
RUN pip install --no-cache-dir . && phoenix-stream train --models-dir /app/models
ENV PHOENIX_MODELS_DIR=/app/models
CMD ["phoenix-stream", "worker"]
