"""Tenant binding rules shared by TenantService (bind time) and the adapters (build time).

One module per backend holds its config: the binding rules that need no secret
(`binding_violations`) and the parsing that does (`config_from_binding` / `from_binding`), used
by the storage adapters. `registry` maps each backend/provider to them plus its provider host
list; `egress` refuses endpoints that point inside; `secret_scope` keeps secret references
within the tenant. Services may all import this package; it imports no service.
"""
