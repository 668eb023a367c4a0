"""The mesh as `makoto up` runs it: Envoy config rendering and the process launcher."""
