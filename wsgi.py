"""The WSGI entry point gunicorn imports: `gunicorn -c gunicorn.conf.py wsgi:app` (make serve).
The app inside its deadlines on the socket: attrition/api/app.py's served_app."""

from attrition.api.app import served_app

app = served_app()
