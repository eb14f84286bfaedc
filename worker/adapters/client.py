"""Build the one ``AsyncOpenAI`` client a worker process shares across its jobs."""

from __future__ import annotations

import httpx2
import openai

from schemas.settings import WorkerSettings


def build_client(settings: WorkerSettings) -> openai.AsyncOpenAI:
    """aiohttp transport, no SDK retries (every attempt must pass our own admission and backoff), explicit timeout."""
    key = settings.api_key()
    if not key:
        raise ValueError("no API key: set OPENAI_API_KEY (or EXTRACT_OPENAI_API_KEY, or mount it in the secrets dir)")
    timeout = httpx2.Timeout(settings.request_timeout_s, connect=settings.connect_timeout_s)
    return openai.AsyncOpenAI(
        api_key=key,
        base_url=settings.openai_base_url,
        max_retries=0,
        timeout=timeout,
        http_client=openai.DefaultAioHttpClient(timeout=timeout),
    )
