"""`python -m services.metering` runs MeteringService."""

from services.common.server import main
from services.metering.server import build

if __name__ == "__main__":
    main(build)
