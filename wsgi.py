"""The WSGI entry point gunicorn imports: `gunicorn -c gunicorn.conf.py wsgi:app` (make serve)."""

from app import create_app, warm_up

app = create_app()
warm_up(app)
