"""TenantService: tenant lifecycle, configuration, resource bindings and tenant users."""
