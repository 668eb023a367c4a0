"""The REST API described for its users (OpenAPI)."""
