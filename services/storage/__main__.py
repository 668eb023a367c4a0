"""`python -m services.storage` runs StorageService."""

from services.common.server import main
from services.storage.server import build

if __name__ == "__main__":
    main(build)
