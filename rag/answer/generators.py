"""Generators: the optional LLMs that write an answer from numbered passages.

Two backends behind one small protocol, chosen by configuration (`LLMSettings`: the RAG_LLM_*
environment variables, or the CLI's --llm-* flags):

- `OpenAICompatibleGenerator`: any chat endpoint that speaks OpenAI's streaming API (Ollama,
  llama.cpp server, vLLM), over HTTP;
- `LlamaCppGenerator`: a GGUF model file run in this process by xllamacpp, an optional extra
  (`pip install 'rag[llm]'`).

Nothing is downloaded. Every failure (unreachable, HTTP error, silent for too long, a reply that
is not a chat completion) raises `GeneratorError` with one line saying what to check, so the
caller can fall back to the extractive answer instead of hanging or showing a traceback.
"""

from __future__ import annotations

import json
import os
import queue
import threading
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any, Literal, Protocol, TypedDict, runtime_checkable

import httpx

from rag.errors import ConfigError, GeneratorError

DEFAULT_TIMEOUT = 60.0
_MAX_TOKENS = 512


class ChatMessage(TypedDict):
    role: Literal["system", "user", "assistant"]
    content: str


@runtime_checkable
class Generator(Protocol):
    """What answering needs from an LLM: a name to show, and the reply streamed as text pieces.

    `stream` raises `GeneratorError` for anything that keeps it from answering.
    """

    name: str

    def stream(self, messages: Sequence[ChatMessage]) -> Iterator[str]:
        ...


@dataclass(frozen=True)
class LLMSettings:
    """Which LLM writes answers in mode "llm": an endpoint (`url` and `model`) or a GGUF file.

    `timeout` is how long to wait, in seconds, for the model to connect or send its next piece.

    >>> LLMSettings.from_env({"RAG_LLM_URL": "http://127.0.0.1:11434/v1", "RAG_LLM_MODEL": "llama3.2"}).model
    'llama3.2'
    >>> LLMSettings.from_env({}).generator() is None
    True
    """

    url: str | None = None
    model: str | None = None
    api_key: str | None = None
    gguf: Path | None = None
    timeout: float = DEFAULT_TIMEOUT

    def __post_init__(self) -> None:
        if not 0 < self.timeout <= 3600:
            raise ConfigError(f"the LLM timeout must be between 0 and 3600 seconds, got {self.timeout!r}")
        if self.url and not self.url.startswith(("http://", "https://")):
            raise ConfigError(f"the LLM endpoint must be an http:// or https:// URL, got {self.url!r}")

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> LLMSettings:
        """Read RAG_LLM_URL, RAG_LLM_MODEL, RAG_LLM_API_KEY, RAG_LLM_GGUF and RAG_LLM_TIMEOUT."""
        env = os.environ if environ is None else environ
        timeout_text = env.get("RAG_LLM_TIMEOUT", "").strip()
        try:
            timeout = float(timeout_text) if timeout_text else DEFAULT_TIMEOUT
        except ValueError:
            raise ConfigError(f"RAG_LLM_TIMEOUT must be a number of seconds, got {timeout_text!r}") from None
        gguf = env.get("RAG_LLM_GGUF", "").strip()
        return cls(url=env.get("RAG_LLM_URL", "").strip() or None,
                   model=env.get("RAG_LLM_MODEL", "").strip() or None,
                   api_key=env.get("RAG_LLM_API_KEY", "").strip() or None,
                   gguf=Path(gguf) if gguf else None, timeout=timeout)

    def generator(self) -> Generator | None:
        """The configured generator, or None when no LLM is configured."""
        if self.url and self.gguf:
            raise GeneratorError("both an LLM endpoint (RAG_LLM_URL, --llm-url) and a GGUF model file "
                                 "(RAG_LLM_GGUF, --llm-gguf) are configured: keep one")
        if self.url:
            if not self.model:
                raise GeneratorError(f"the LLM endpoint {self.url} needs a model name: set RAG_LLM_MODEL "
                                     "(or --llm-model) to a model it serves, e.g. llama3.2 for Ollama")
            return OpenAICompatibleGenerator(self.url, self.model, self.api_key, timeout=self.timeout)
        if self.gguf:
            return LlamaCppGenerator(self.gguf, timeout=self.timeout)
        return None


def generator_from_env(environ: Mapping[str, str] | None = None) -> Generator | None:
    """The generator the RAG_LLM_* environment variables configure, or None if they configure none."""
    return LLMSettings.from_env(environ).generator()


class OpenAICompatibleGenerator:
    """A chat model behind an OpenAI-compatible endpoint, streamed over server-sent events.

    `base_url` is the API root (`http://127.0.0.1:11434/v1` for Ollama, `http://127.0.0.1:8080/v1`
    for llama.cpp server); a URL that already ends in /chat/completions is used as given.
    `timeout` bounds each wait (connecting, then every next piece); `total_timeout` the whole reply.

    >>> generator = OpenAICompatibleGenerator("http://127.0.0.1:11434/v1", "llama3.2")
    >>> generator.url
    'http://127.0.0.1:11434/v1/chat/completions'
    >>> "".join(generator.stream([{"role": "user", "content": "Say hello"}]))  # doctest: +SKIP
    'Hello!'
    """

    def __init__(self, base_url: str, model: str, api_key: str | None = None, *,
                 timeout: float = DEFAULT_TIMEOUT, total_timeout: float = 600.0,
                 max_tokens: int = _MAX_TOKENS, temperature: float = 0.0) -> None:
        base_url = base_url.rstrip("/")
        self.url = base_url if base_url.endswith("/chat/completions") else f"{base_url}/chat/completions"
        self.model = model
        self.name = f"{model} at {base_url}"
        self.api_key = api_key
        self.timeout = timeout
        self.total_timeout = total_timeout
        self.max_tokens = max_tokens
        self.temperature = temperature

    def stream(self, messages: Sequence[ChatMessage]) -> Iterator[str]:
        body = {"model": self.model, "messages": list(messages), "stream": True,
                "temperature": self.temperature, "max_tokens": self.max_tokens}
        headers = {"Accept": "text/event-stream"}
        if self.api_key:
            headers["Authorization"] = f"Bearer {self.api_key}"
        deadline = time.monotonic() + self.total_timeout
        try:
            with httpx.stream("POST", self.url, json=body, headers=headers, timeout=self.timeout) as response:
                if response.status_code != 200:
                    response.read()
                    raise GeneratorError(f"the LLM endpoint {self.url} answered HTTP {response.status_code} "
                                         f"{response.reason_phrase}: {_excerpt(response.text)}")
                if response.headers.get("content-type", "").startswith("application/json"):
                    response.read()  # an endpoint that ignores "stream": one whole completion
                    yield chat_chunk_text(self._json(response.text), self._source)
                    return
                yield from self._events(response, deadline)
        except httpx.TimeoutException:
            raise GeneratorError(f"the LLM endpoint {self.url} sent nothing for {self.timeout:g} s: check that "
                                 "the server is working, or allow more time with RAG_LLM_TIMEOUT") from None
        except httpx.ConnectError as error:
            raise GeneratorError(f"cannot reach the LLM endpoint {self.url} ({error}): is the server running "
                                 "and is RAG_LLM_URL (--llm-url) right?") from None
        except (httpx.HTTPError, httpx.InvalidURL) as error:
            raise GeneratorError(f"the exchange with the LLM endpoint {self.url} failed: {error}") from None

    def _events(self, response: httpx.Response, deadline: float) -> Iterator[str]:
        """The text of each `data:` event until `data: [DONE]` (or the end of the stream)."""
        received = False
        for line in response.iter_lines():
            if time.monotonic() > deadline:
                raise GeneratorError(f"the LLM endpoint {self.url} was still answering after "
                                     f"{self.total_timeout:g} s: stopped")
            if not line or line.startswith(":"):
                continue
            field, _, value = line.partition(":")
            if field in ("event", "id", "retry"):
                continue
            if field != "data":
                raise GeneratorError(self._garbage(line))
            value = value.strip()
            if value == "[DONE]":
                return
            received = True
            yield chat_chunk_text(self._json(value), self._source)
        if not received:
            raise GeneratorError(f"the LLM endpoint {self.url} closed the stream without answering")

    @property
    def _source(self) -> str:
        return f"endpoint {self.url}"

    def _json(self, text: str) -> Any:
        try:
            return json.loads(text)
        except json.JSONDecodeError:
            raise GeneratorError(self._garbage(text)) from None

    def _garbage(self, text: str) -> str:
        return (f"{_not_a_completion(self._source, text)}: check that RAG_LLM_URL (--llm-url) is the API root, "
                "e.g. http://127.0.0.1:11434/v1")


class LlamaCppGenerator:
    """A local GGUF model run in this process by xllamacpp (`pip install 'rag[llm]'`).

    The file and the package are checked here; the model loads on the first answer or in
    `warm_up()`. Nothing is downloaded: `model_path` is a .gguf file you already have.
    `timeout` bounds the wait for each next piece of the reply.

    >>> generator = LlamaCppGenerator("models/qwen2.5-1.5b-instruct-q4_k_m.gguf")  # doctest: +SKIP
    >>> "".join(generator.stream([{"role": "user", "content": "Say hello"}]))  # doctest: +SKIP
    """

    def __init__(self, model_path: str | Path, *, context_tokens: int = 4096, max_tokens: int = _MAX_TOKENS,
                 threads: int | None = None, timeout: float = DEFAULT_TIMEOUT) -> None:
        path = Path(model_path).expanduser()
        if not path.is_file():
            raise GeneratorError(f"no GGUF model file at {path}: give the path of a .gguf file you have "
                                 "(RAG_LLM_GGUF or --llm-gguf); nothing is downloaded")
        with path.open("rb") as file:
            if file.read(4) != b"GGUF":
                raise GeneratorError(f"{path} is not a GGUF model file (it lacks the GGUF signature): "
                                     "give a llama.cpp .gguf model")
        self._xllamacpp = _import_xllamacpp()
        self.model_path = path
        self.name = path.name
        self.context_tokens = context_tokens
        self.max_tokens = max_tokens
        self.threads = threads
        self.timeout = timeout
        self._server: Any = None
        self._lock = threading.Lock()

    def warm_up(self) -> None:
        """Load the model (once); the first answer does this if it was not done before."""
        with self._lock:
            if self._server is not None:
                return
            params = self._xllamacpp.CommonParams()
            params.model.path = str(self.model_path)
            params.n_ctx = self.context_tokens
            params.n_predict = self.max_tokens
            if self.threads:
                params.cpuparams.n_threads = self.threads
                params.cpuparams_batch.n_threads = self.threads
            try:
                self._server = self._xllamacpp.Server(params)
            except Exception as error:  # the binding's own error types are not documented
                raise GeneratorError(f"xllamacpp could not load {self.model_path}: {error}") from error

    def stream(self, messages: Sequence[ChatMessage]) -> Iterator[str]:
        """Run the model on a worker thread (the binding blocks while it calls back per piece)
        and hand its pieces over through a queue, so a silent model times out here."""
        self.warm_up()
        request = {"messages": list(messages), "stream": True, "max_tokens": self.max_tokens, "temperature": 0.0}
        pieces: queue.Queue[Any] = queue.Queue()
        stop = threading.Event()
        finished = object()

        def on_chunk(chunk: Any) -> bool:
            pieces.put(chunk)
            return stop.is_set()  # True asks the binding to stop generating

        def generate() -> None:
            try:
                self._server.handle_chat_completions(request, on_chunk)
            except Exception as error:  # reported to the reading thread, not lost on this one
                pieces.put(GeneratorError(f"the local model {self.name} failed: {error}"))
            finally:
                pieces.put(finished)

        threading.Thread(target=generate, name="rag-llama-cpp", daemon=True).start()
        try:
            while True:
                try:
                    item = pieces.get(timeout=self.timeout)
                except queue.Empty:
                    raise GeneratorError(f"the local model {self.name} produced nothing for {self.timeout:g} s: "
                                         "allow more time with RAG_LLM_TIMEOUT") from None
                if item is finished:
                    return
                if isinstance(item, GeneratorError):
                    raise item
                for event in item if isinstance(item, list) else [item]:
                    yield chat_chunk_text(event, f"model {self.name}")
        finally:
            stop.set()


def chat_chunk_text(event: Any, source: str) -> str:
    """The text of one chat completion (chunk), or GeneratorError if it is an error or not one."""
    if not isinstance(event, dict):
        raise GeneratorError(_not_a_completion(source, json.dumps(event)))
    if "error" in event or ("code" in event and "message" in event):
        error = event.get("error", event)
        message = error.get("message", error) if isinstance(error, dict) else error
        raise GeneratorError(f"the LLM {source} reported an error: {_excerpt(str(message))}")
    choices = event.get("choices")
    if not isinstance(choices, list):
        raise GeneratorError(_not_a_completion(source, json.dumps(event)))
    if not choices:  # a usage-only chunk
        return ""
    choice = choices[0] if isinstance(choices[0], dict) else {}
    message = choice.get("delta") or choice.get("message") or {}
    content = message.get("content") if isinstance(message, dict) else None
    if content is not None and not isinstance(content, str):
        raise GeneratorError(_not_a_completion(source, json.dumps(event)))
    return content or ""


def _import_xllamacpp() -> ModuleType:
    try:
        import xllamacpp
    except ImportError:
        raise GeneratorError("running a GGUF model needs the optional xllamacpp package: "
                             "pip install 'rag[llm]' (or use an OpenAI-compatible endpoint with RAG_LLM_URL)") from None
    return xllamacpp


def _not_a_completion(source: str, text: str) -> str:
    return f"the LLM {source} did not answer with an OpenAI-compatible chat completion (got {_excerpt(text)!r})"


def _excerpt(text: str, limit: int = 120) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 1] + "…"
