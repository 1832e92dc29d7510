"""The Flask app: factory, routes, request parsing, auth, dashboard, metrics, deadlines, serving caches."""
