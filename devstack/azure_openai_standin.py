"""The Portkey stand-in in Azure OpenAI's shape, as the gateway's ``azure-openai`` provider reaches it.

Azure OpenAI served the Assistants API threads (until their retirement on 2026-08-26) at
``https://{resource}.openai.azure.com/openai/threads/{id}?api-version=…`` and authenticates with an
``api-key`` header (no ``Authorization``, no ``OpenAI-Beta`` requirement). Pointing the gateway's
``custom_host`` at :attr:`AzureOpenAIStandIn.url` (``http://127.0.0.1:PORT/openai``) sends it the
same path, query and headers. Conversations are Azure's v1 API:
``https://{resource}.openai.azure.com/openai/v1/conversations/{id}``, ``api-version`` optional, the
same ``api-key``. Everything else (stores, scripting, recording) is the
:class:`~devstack.portkey_standin.PortkeyStandIn`'s.

    with AzureOpenAIStandIn(api_keys={"azure-key"}) as azure:
        config = {"provider": "azure-openai", "resource_name": "r", "api_version": "2024-05-01-preview",
                  "api_key": "azure-key", "custom_host": azure.url}
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any
from urllib.parse import parse_qs, urlsplit

from devstack.portkey_standin import PortkeyStandIn, _Answer, _ApiError, _Exchange

__all__ = ["AZURE_PREFIX", "AzureOpenAIStandIn"]

AZURE_PREFIX = "/openai"
API_KEY_HEADER = "api-key"
# Azure's own answers to a request without api-version and to a wrong key.
_MISSING_API_VERSION = "The api-version query parameter (?api-version=) is required for all requests."
_ACCESS_DENIED = (
    "Access denied due to invalid subscription key or wrong API endpoint. Make sure to provide a valid "
    "key for an active subscription and use a correct regional API endpoint for your resource."
)


class AzureOpenAIStandIn(PortkeyStandIn):
    """Threads under ``/openai`` with a required ``api-version`` query parameter, conversations under
    ``/openai/v1`` (the v1 API: ``api-version`` optional); ``api-key`` authenticates.

    ``api_keys``: the accepted ``api-key`` values. ``api_versions``: if given, the only accepted
    ``api-version`` values (any non-empty value otherwise). Scripted replies skip these checks, as
    they skip every normal behaviour; the recorded request still shows what arrived.
    """

    def __init__(
        self, *, api_keys: Iterable[str], api_versions: Iterable[str] | None = None, **options: Any
    ) -> None:
        super().__init__(prefix=AZURE_PREFIX, require_beta_header=False, **options)
        self.azure_api_keys = frozenset(api_keys)
        self.api_versions = None if api_versions is None else frozenset(api_versions)

    def __enter__(self) -> AzureOpenAIStandIn:
        self.start()
        return self

    @property
    def conversation_prefix(self) -> str:
        return f"{self.prefix}/v1"

    def _normal(self, exchange: _Exchange) -> _Answer:
        if exchange.conversation_id is not None:  # the v1 API: no dated api-version
            return super()._normal(exchange)
        query = parse_qs(urlsplit(exchange.path).query)
        versions = query.get("api-version", [])
        if not versions or not versions[0]:
            raise _ApiError(400, _MISSING_API_VERSION, code="MissingApiVersionParameter")
        if self.api_versions is not None and versions[0] not in self.api_versions:
            raise _ApiError(400, f"Unsupported api-version '{versions[0]}'.", code="UnsupportedApiVersion")
        return super()._normal(exchange)

    def _check_auth(self, headers: Mapping[str, str]) -> None:
        if headers.get(API_KEY_HEADER) not in self.azure_api_keys:
            raise _ApiError(401, _ACCESS_DENIED, code="401")
