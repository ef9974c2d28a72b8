"""HTTP API: app factory, routes, serving, errors and middleware."""
