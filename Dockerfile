# One image for every Mandate container: the servers, the migration job and the mail sender.

# The NHS.UK frontend's files, from the release package-lock.json pins; only they reach the image.
FROM node:20-slim AS frontend
WORKDIR /build
COPY package.json package-lock.json ./
RUN npm ci --omit=dev --no-audit --no-fund --loglevel=error
COPY deploy/frontend-assets.sh deploy/
RUN mkdir -p app/static && deploy/frontend-assets.sh

FROM python:3.11-slim

# The code stays where it is copied and is installed in place (editable): app.db finds
# alembic.ini and migrations/ beside the app package, which a site-packages install would not.
WORKDIR /srv/mandate

RUN useradd --system --user-group --uid 10001 --no-create-home --shell /usr/sbin/nologin mandate \
 && install -d -o mandate -g mandate -m 700 /var/lib/mandate

# Dependencies first, against a placeholder package, so a change to the code alone reuses them.
COPY pyproject.toml README.md ./
RUN mkdir app && touch app/__init__.py \
 && pip install --no-cache-dir --root-user-action=ignore -e .

COPY alembic.ini ./
COPY migrations/ migrations/
COPY app/ app/
COPY --from=frontend /build/app/static/nhsuk/ app/static/nhsuk/
# Compiled now, as root: at run time the code is read-only to the service's user.
RUN python -m compileall -q app migrations

# A named volume mounted here starts out owned by the service's user, as the directory is.
ENV DATA_DIR=/var/lib/mandate
USER mandate
EXPOSE 8000

HEALTHCHECK --interval=30s --timeout=5s --start-period=30s --retries=3 \
  CMD ["python", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8000/healthz', timeout=4)"]

CMD ["mandate", "serve", "--host", "0.0.0.0", "--port", "8000"]
