"""Access control shared by every server: scopes (pure), API tokens and their table, OIDC JWTs,
per-client limits, and the ASGI gate that enforces a route table. Must not import a server."""
