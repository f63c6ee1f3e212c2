# The hotcold image: one image for web (gunicorn), Celery worker and beat (see docker-compose.yml).
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    HOTCOLD_DATA_DIR=/app/data

WORKDIR /app
# Dependencies first, so that a code change does not reinstall them. The wheel holds the tiering app; the
# demo site and example apps run from /app, the working directory.
COPY pyproject.toml README.md ./
COPY tiering/__init__.py tiering/
RUN pip install ".[demo]"

COPY . .
RUN pip install --no-deps . \
    && useradd --create-home --uid 1000 hotcold \
    && mkdir -p /app/data /app/staticfiles \
    && python manage.py collectstatic --noinput -v0 \
    && chown -R hotcold /app/data /app/staticfiles
USER hotcold

EXPOSE 8000
CMD ["gunicorn", "hotcold_site.wsgi:application", "--bind", "0.0.0.0:8000"]
