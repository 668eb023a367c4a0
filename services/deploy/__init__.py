"""Running the mesh as a fleet: the gateway config for containers, Kustomize rendering, OpenAPI."""
