# The gate for container platforms other than Heroku: the same lock (requirements.txt), the same gunicorn settings.
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PORT=8000

RUN useradd --create-home --uid 10001 gate
WORKDIR /app

COPY . .
# requirements.txt pins every dependency and ends with `.`, the gate itself (with the `gateway` command).
RUN pip install -r requirements.txt \
    && mkdir -p instance && chown gate:gate instance

USER gate
EXPOSE 8000
HEALTHCHECK --interval=30s --timeout=5s \
    CMD python -c "import os, urllib.request; urllib.request.urlopen(f'http://127.0.0.1:{os.environ[\"PORT\"]}/healthz', timeout=3)"
# gunicorn reads ./gunicorn.conf.py: binds 0.0.0.0:$PORT, $WEB_CONCURRENCY gthread workers.
CMD ["gunicorn", "--config", "gunicorn.conf.py", "app:app"]
