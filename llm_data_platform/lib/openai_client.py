"""One way to build an OpenAI client for every use (embeddings, grounded answers).

The SDK retries every 429, but an exhausted quota (``insufficient_quota``) is not transient:
retrying only delays the clear error, so this client does not retry it.
"""

from __future__ import annotations

from typing import Any


def make_openai_client(
    api_key: str | None, base_url: str | None, timeout: float, max_retries: int
) -> Any:
    from openai import OpenAI

    class QuotaAwareOpenAI(OpenAI):
        def _should_retry(self, response: Any) -> bool:
            if response.status_code == 429:
                response.read()
                if b"insufficient_quota" in response.content:
                    return False
            return super()._should_retry(response)

    return QuotaAwareOpenAI(
        api_key=api_key or "not-needed",
        base_url=base_url or None,
        timeout=timeout,
        max_retries=max_retries,
    )


def is_insufficient_quota(exc: Exception) -> bool:
    return getattr(exc, "code", None) == "insufficient_quota" or "insufficient_quota" in str(
        getattr(exc, "body", "")
    )
