"""Azure OpenAI: the OpenAI adapter with an AsyncAzureOpenAI client. Deployments are the
models (`model` is the deployment name); the key travels in the `api-key` header."""

from __future__ import annotations

import openai

from services.llm.adapters.openai_http import OpenAIHttp
from services.llm.adapters.openai_provider import OpenAIProvider
from services.llm.ports import ProviderConfig


def build_azure_openai(config: ProviderConfig) -> OpenAIProvider:
    client = openai.AsyncAzureOpenAI(
        azure_endpoint=config.endpoint, api_version=config.api_version, **config.sdk_options()
    )
    headers = {"api-key": config.api_key}
    http = OpenAIHttp.from_config(
        config, provider="azure_openai", headers=headers, azure_api_version=config.api_version
    )
    return OpenAIProvider(
        client, http=http, secret=config.api_key, name="azure_openai", max_tokens_param="max_tokens"
    )
