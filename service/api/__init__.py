"""The HTTP layer: the FastAPI app, its dependencies, middleware, problem+json errors and routes."""
