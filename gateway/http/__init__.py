"""The thin HTTP layer shared by both services: problems, auth, middleware, metrics, OpenAPI."""
