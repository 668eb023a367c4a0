"""`python -m services.tenant` runs TenantService (and the internal TenantDirectoryService)."""

from services.common.server import main
from services.tenant.server import build

if __name__ == "__main__":
    main(build)
