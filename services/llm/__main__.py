"""`python -m services.llm` runs LLMService."""

from services.common.server import main
from services.llm.server import build

if __name__ == "__main__":
    main(build)
