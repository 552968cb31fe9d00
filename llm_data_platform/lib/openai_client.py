"""One way to build an OpenAI client for every use (embeddings, grounded answers).

The SDK retries every 429, but an exhausted quota (``insufficient_quota``) is not transient:
retrying only delays the clear error, so this client does not retry it.

The key is whatever the caller passes (OPENAI_API_KEY, for OpenAI and compatible servers
alike); a placeholder goes out only when there is no key, because the SDK refuses to start
without one and a keyless server (Ollama, a local vLLM) ignores it.
"""

from __future__ import annotations

import re
from typing import Any

DEFAULT_BASE_URL = "https://api.openai.com/v1"
NO_KEY_PLACEHOLDER = "not-needed"
_KEY_LIKE = re.compile(r"\bsk-[A-Za-z0-9_*.\-]{3,}")


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
        api_key=api_key or NO_KEY_PLACEHOLDER,
        base_url=base_url or None,
        timeout=timeout,
        max_retries=max_retries,
    )


def is_insufficient_quota(exc: Exception) -> bool:
    return getattr(exc, "code", None) == "insufficient_quota" or "insufficient_quota" in str(
        getattr(exc, "body", "")
    )


def redact(text: str, secret: str | None) -> str:
    """``text`` without ``secret`` nor anything shaped like an OpenAI key: servers echo keys
    back in 401 bodies, and error messages end up in run logs."""
    if secret:
        text = text.replace(secret, "***")
    return _KEY_LIKE.sub("sk-***", text)


def explain_openai_error(exc: Exception, base_url: str | None, api_key: str | None) -> str | None:
    """The real cause of a failed call, naming the setting that fixes it; None for errors the
    caller handles itself (quota, bad requests). ``api_key`` is the key that was sent, if any:
    it is used only to say whether one was sent and to keep it out of the message."""
    import openai

    where = base_url or DEFAULT_BASE_URL
    if isinstance(exc, openai.AuthenticationError | openai.PermissionDeniedError):
        return _auth_message(exc, base_url, api_key)
    if isinstance(exc, openai.APITimeoutError):
        return f"The server at {where} did not answer in time. Is it overloaded? Check it."
    if isinstance(exc, openai.APIConnectionError):
        cause = exc.__cause__ or exc
        return (
            f"Could not connect to the server at {where} ({type(cause).__name__}: {cause}). "
            "Is it running? Check OPENAI_BASE_URL."
        )
    if isinstance(exc, openai.NotFoundError):
        return (
            f"The server at {where} answered 404: the model is not served there, or the URL "
            "lacks its API path (OPENAI_BASE_URL usually ends in /v1)."
        )
    return None


def _auth_message(exc: Any, base_url: str | None, api_key: str | None) -> str:
    said = redact(str(getattr(exc, "message", "")), api_key)[:300]
    status = getattr(exc, "status_code", 401)
    if not base_url:
        return f"OpenAI rejected the API key ({status}: {said}). Check OPENAI_API_KEY."
    if api_key:
        return (
            f"The server at {base_url} (OPENAI_BASE_URL) rejected the key sent from "
            f"OPENAI_API_KEY ({status}: {said}). Set OPENAI_API_KEY to the key that server "
            "expects."
        )
    return (
        f"The server at {base_url} (OPENAI_BASE_URL) wants a key ({status}: {said}) and none "
        "was sent: OPENAI_API_KEY is not set. Set it to the key that server expects."
    )
