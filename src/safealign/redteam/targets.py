"""Chat models to attack or to attack with: a local model (path, run directory, hub id, `embedded`) or any
OpenAI-compatible `/chat/completions` endpoint (vLLM, llama.cpp server, Ollama, a deployed system).

Both answer a batch of conversations with one `Reply` per conversation. An endpoint that times out,
fails or returns something that is not a chat completion gives a `Reply` with `error` set for that
conversation only: a red-team run records the failed attempt and carries on.
"""

from __future__ import annotations

import http.client
import json
import logging
import os
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Protocol

from safealign.errors import SafealignError
from safealign.generation import Conversation, GenerationConfig

log = logging.getLogger(__name__)


@dataclass
class Reply:
    text: str | None
    """The answer; None when the call failed (see `error`)."""
    error: str | None = None
    seconds: float = 0.0
    tokens: int = 0
    finished: bool = True


class ChatModel(Protocol):
    name: str

    def respond(self, conversations: list[Conversation], cfg: GenerationConfig,
                progress: Callable[[int], None] | None = None) -> list[Reply]: ...


def is_endpoint(spec: str) -> bool:
    return str(spec).startswith(("http://", "https://"))


class LocalChatModel:
    """A model loaded in this process, generating through the generation backends (transformers by default)."""

    def __init__(self, generator, name: str):
        self.generator, self.name = generator, name

    @classmethod
    def load(cls, spec: str, device: str = "auto", backend: str = "transformers") -> LocalChatModel:
        from safealign.generation import get_generator

        if backend == "vllm":
            from safealign.models.loading import resolve_model_path

            return cls(get_generator("vllm", model_path=resolve_model_path(spec)), str(spec))
        from safealign.models import load_model

        model, tok = load_model(spec, device=device)
        return cls(get_generator("transformers", model=model, tokenizer=tok), str(spec))

    def respond(self, conversations, cfg, progress=None) -> list[Reply]:
        if not conversations:
            return []
        try:
            records = self.generator.generate(conversations, cfg, progress=progress)
        except (RuntimeError, ValueError) as e:  # e.g. out of memory: record it, keep what the run has found so far
            log.exception("%s: generation failed for %d conversations", self.name, len(conversations))
            return [Reply(None, f"local generation failed: {type(e).__name__}: {str(e)[:200]}") for _ in conversations]
        return [Reply(r.response, None, r.seconds, r.response_tokens, r.finished) for r in records]


class EndpointChatModel:
    """An OpenAI-compatible chat endpoint, standard library HTTP only, a few requests in flight at once."""

    def __init__(self, base_url: str, model: str | None = None, timeout: float = 60.0, max_retries: int = 1,
                 concurrency: int = 4, api_key_env: str = "OPENAI_API_KEY"):
        url = base_url.rstrip("/")
        self.url = url if url.endswith("/chat/completions") else f"{url}/chat/completions"
        self.base_url = self.url[: -len("/chat/completions")]
        self.model, self.timeout, self.max_retries = model, timeout, max_retries
        self.concurrency, self.api_key_env = concurrency, api_key_env
        self.name = f"{self.base_url}" + (f"#{model}" if model else "")

    def _headers(self) -> dict[str, str]:
        headers = {"Content-Type": "application/json"}
        key = os.environ.get(self.api_key_env)
        if key:
            headers["Authorization"] = f"Bearer {key}"
        return headers

    def _model_name(self) -> str:
        """The served model: as given, else the first one `GET /models` lists, else `default`."""
        if self.model is None:
            try:
                req = urllib.request.Request(f"{self.base_url}/models", headers=self._headers())
                with urllib.request.urlopen(req, timeout=min(self.timeout, 10)) as r:
                    self.model = str(json.loads(r.read().decode("utf-8"))["data"][0]["id"])
            except Exception as e:  # any failure here only means we cannot discover a name
                log.info("%s/models: no model list (%s); using model name 'default'", self.base_url, e)
                self.model = "default"
        return self.model

    def _one(self, messages: Conversation, cfg: GenerationConfig) -> Reply:
        body = {"model": self._model_name(), "messages": messages, "max_tokens": cfg.max_new_tokens,
                "temperature": cfg.temperature, "seed": cfg.seed}
        if cfg.do_sample:
            body["top_p"] = cfg.top_p
        request = urllib.request.Request(self.url, json.dumps(body).encode(), self._headers(), method="POST")
        t0 = time.perf_counter()
        error = "no attempt made"
        for attempt in range(self.max_retries + 1):
            try:
                with urllib.request.urlopen(request, timeout=self.timeout) as r:
                    raw = r.read().decode("utf-8", errors="replace")
                return _parse_completion(raw, time.perf_counter() - t0)
            except urllib.error.HTTPError as e:
                if e.code in (401, 403):
                    raise SafealignError(f"{self.url}: HTTP {e.code} (unauthorised); put the API key in "
                                         f"${self.api_key_env}") from None
                error = f"HTTP {e.code} {e.reason}"
                if e.code < 500 and e.code != 429:
                    break
            except (urllib.error.URLError, TimeoutError, OSError, http.client.HTTPException) as e:
                reason = getattr(e, "reason", None) or e
                error = f"timeout after {self.timeout:g}s" if "timed out" in str(reason) else f"unreachable ({reason})"
            if attempt < self.max_retries:
                time.sleep(0.5 * 2**attempt)
        return Reply(None, error, time.perf_counter() - t0)

    def respond(self, conversations, cfg, progress=None) -> list[Reply]:
        def call(conv):
            messages = list(conv)
            if cfg.system_prompt and (not messages or messages[0]["role"] != "system"):
                messages = [{"role": "system", "content": cfg.system_prompt}, *messages]
            reply = self._one(messages, cfg)
            if progress:
                progress(1)
            return reply

        with ThreadPoolExecutor(max_workers=max(1, self.concurrency)) as pool:
            return list(pool.map(call, conversations))


def _parse_completion(raw: str, seconds: float) -> Reply:
    """A Reply from the body of a chat completion; anything else is an error that quotes what came back."""
    try:
        obj = json.loads(raw)
        choice = obj["choices"][0]
        text = choice["message"]["content"]
    except (json.JSONDecodeError, KeyError, IndexError, TypeError):
        return Reply(None, f"garbage reply (not a chat completion): {raw[:200]!r}", seconds)
    if text is None:
        text = ""
    if not isinstance(text, str):
        return Reply(None, f"garbage reply (content is {type(text).__name__}, not text): {raw[:200]!r}", seconds)
    usage = obj.get("usage") if isinstance(obj.get("usage"), dict) else {}
    tokens = usage.get("completion_tokens") if isinstance(usage.get("completion_tokens"), int) else 0
    return Reply(text.strip(), None, seconds, tokens, choice.get("finish_reason") != "length")


def open_chat_model(spec: str, model: str | None = None, *, timeout: float = 60.0, max_retries: int = 1,
                    concurrency: int = 4, api_key_env: str = "OPENAI_API_KEY", device: str = "auto",
                    backend: str = "transformers", cache: dict | None = None) -> ChatModel:
    """An endpoint for an http(s) URL (with `model` as the served model name), else a local model.

    `cache` lets an attacker and a target that name the same local model share one copy in memory.
    """
    if is_endpoint(spec):
        return EndpointChatModel(spec, model, timeout, max_retries, concurrency, api_key_env)
    key = (str(spec), device, backend)
    if cache is not None and key in cache:
        return cache[key]
    loaded = LocalChatModel.load(str(spec), device, backend)
    if cache is not None:
        cache[key] = loaded
    return loaded
