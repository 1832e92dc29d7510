"""The WSGI entry point gunicorn imports: `gunicorn -c gunicorn.conf.py wsgi:app` (make serve)."""

from app import create_app

app = create_app()
