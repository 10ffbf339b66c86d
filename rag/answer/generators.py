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
import re
import secrets
import shutil
import tempfile
import threading
import time
import weakref
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any, Literal, Protocol, TypedDict, runtime_checkable

import httpx

from rag.errors import ConfigError, GeneratorError

DEFAULT_TIMEOUT = 60.0
"""Seconds to wait for the first word of an answer (a local model reads the passages first)."""
DEFAULT_ANSWER_TIMEOUT = 120.0
"""Seconds an answer may take in all."""
_MAX_TOKENS = 200
"""Tokens an answer may have: one to three sentences need about 100; a model that runs past
that is usually looping."""
REPEAT_WORDS = 12
"""A reply whose newest this many words already occurred in it is looping: it ends there."""


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

    `timeout` is how long to wait, in seconds, for the first word (connecting, reading the
    passages); `answer_timeout` for the whole answer; `threads` the local model's (GGUF only).

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
    answer_timeout: float = DEFAULT_ANSWER_TIMEOUT
    threads: int | None = None

    def __post_init__(self) -> None:
        if not 0 < self.timeout <= 3600:
            raise ConfigError(f"the LLM timeout must be between 0 and 3600 seconds, got {self.timeout!r}")
        if not 0 < self.answer_timeout <= 3600:
            raise ConfigError(f"the LLM answer timeout must be between 0 and 3600 seconds, got {self.answer_timeout!r}")
        if self.threads is not None and not 1 <= self.threads <= 256:
            raise ConfigError(f"the LLM threads (RAG_LLM_THREADS, --llm-threads) must be between 1 and 256, "
                              f"got {self.threads!r}")
        if self.url and not self.url.startswith(("http://", "https://")):
            raise ConfigError(f"the LLM endpoint must be an http:// or https:// URL, got {self.url!r}")

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> LLMSettings:
        """Read RAG_LLM_URL, RAG_LLM_MODEL, RAG_LLM_API_KEY, RAG_LLM_GGUF, RAG_LLM_TIMEOUT,
        RAG_LLM_ANSWER_TIMEOUT and RAG_LLM_THREADS."""
        env = os.environ if environ is None else environ
        gguf = env.get("RAG_LLM_GGUF", "").strip()
        threads = _number(env, "RAG_LLM_THREADS", None, int, "a whole number of threads")
        return cls(url=env.get("RAG_LLM_URL", "").strip() or None,
                   model=env.get("RAG_LLM_MODEL", "").strip() or None,
                   api_key=env.get("RAG_LLM_API_KEY", "").strip() or None,
                   gguf=Path(gguf) if gguf else None,
                   timeout=_number(env, "RAG_LLM_TIMEOUT", DEFAULT_TIMEOUT, float, "a number of seconds"),
                   answer_timeout=_number(env, "RAG_LLM_ANSWER_TIMEOUT", DEFAULT_ANSWER_TIMEOUT, float,
                                          "a number of seconds"),
                   threads=int(threads) if threads is not None else None)

    def generator(self) -> Generator | None:
        """The configured generator, or None when no LLM is configured."""
        if self.url and self.gguf:
            raise GeneratorError("both an LLM endpoint (RAG_LLM_URL, --llm-url) and a GGUF model file "
                                 "(RAG_LLM_GGUF, --llm-gguf) are configured: keep one")
        if self.url:
            if not self.model:
                raise GeneratorError(f"the LLM endpoint {self.url} needs a model name: set RAG_LLM_MODEL "
                                     "(or --llm-model) to a model it serves, e.g. llama3.2 for Ollama")
            return OpenAICompatibleGenerator(self.url, self.model, self.api_key, timeout=self.timeout,
                                             total_timeout=self.answer_timeout)
        if self.gguf:
            return LlamaCppGenerator(self.gguf, first_token_timeout=self.timeout, total_timeout=self.answer_timeout,
                                     threads=self.threads)
        return None


def _number(env: Mapping[str, str], name: str, default: float | None, kind: type, what: str) -> float | None:
    text = env.get(name, "").strip()
    if not text:
        return default
    try:
        return kind(text)
    except ValueError:
        raise ConfigError(f"{name} must be {what}, got {text!r}") from None


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
                 timeout: float = DEFAULT_TIMEOUT, total_timeout: float = DEFAULT_ANSWER_TIMEOUT,
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
        """The reply, piece by piece, until it ends, loops or runs out of time."""
        return without_repetition(self._pieces(messages))

    def _pieces(self, messages: Sequence[ChatMessage]) -> Iterator[str]:
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
    """A local GGUF model run in this process by xllamacpp (`pip install 'rag[llm]'`), private and bounded.

    Private: the binding always starts llama.cpp's HTTP server (it cannot be turned off), so it
    listens on a UNIX socket in a folder only this user can open, requires a random API key,
    allows no cross-origin calls and serves no web page; answers go in-process, never through
    it. Bounded: `first_token_timeout` for the first word (reading the passages), then
    `total_timeout` for the whole answer, at most `max_tokens` tokens, and a stop when the
    model starts repeating itself. A time-out, an error or closing the stream cancels the
    generation within one prompt batch (`batch_tokens`) or one token, so the next question
    does not queue behind an abandoned one. `threads` sets llama.cpp's (RAG_LLM_THREADS).

    >>> generator = LlamaCppGenerator("models/qwen2.5-1.5b-instruct-q4_k_m.gguf")  # doctest: +SKIP
    >>> "".join(generator.stream([{"role": "user", "content": "Say hello"}]))  # doctest: +SKIP
    """

    def __init__(self, model_path: str | Path, *, context_tokens: int = 4096, max_tokens: int = _MAX_TOKENS,
                 threads: int | None = None, first_token_timeout: float = DEFAULT_TIMEOUT,
                 total_timeout: float = DEFAULT_ANSWER_TIMEOUT, batch_tokens: int = 64) -> None:
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
        self.first_token_timeout = first_token_timeout
        self.total_timeout = total_timeout
        self.batch_tokens = batch_tokens
        self._server: Any = None
        self._lock = threading.Lock()

    @property
    def listening_address(self) -> str:
        """Where llama.cpp's server listens (a UNIX socket in a private folder), once loaded."""
        return str(getattr(self._server, "listening_address", ""))

    def warm_up(self) -> None:
        """Load the model (once); the first answer does this if it was not done before."""
        with self._lock:
            if self._server is not None:
                return
            params = self._xllamacpp.CommonParams()
            params.model.path = str(self.model_path)
            params.n_ctx = self.context_tokens
            params.n_parallel = 1
            params.n_batch = params.n_ubatch = self.batch_tokens  # how often a cancel is seen while reading
            params.verbosity = 0
            if self.threads:
                params.cpuparams.n_threads = params.cpuparams_batch.n_threads = self.threads
            socket_dir = tempfile.mkdtemp(prefix="rag-llm-")  # mode 0700: no other user can connect
            _make_private(params, os.path.join(socket_dir, "llm.sock"))
            try:
                server = self._xllamacpp.Server(params)
                # one token first: proves the model answers, and a server destroyed before any request may hang
                server.handle_chat_completions({"messages": [{"role": "user", "content": "hi"}], "max_tokens": 1})
            except Exception as error:  # the binding's own error types are not documented
                shutil.rmtree(socket_dir, ignore_errors=True)
                raise GeneratorError(f"xllamacpp could not load {self.model_path}: {error}") from error
            self._server = server
            weakref.finalize(self, shutil.rmtree, socket_dir, True)  # the socket file outlives the server

    def stream(self, messages: Sequence[ChatMessage]) -> Iterator[str]:
        """The reply, piece by piece, until it ends, loops or runs out of time."""
        return without_repetition(self._pieces(messages))

    def _pieces(self, messages: Sequence[ChatMessage]) -> Iterator[str]:
        """Run the model on a worker thread (the binding blocks while it calls back per piece)
        and hand its pieces over through a queue; the worker checks the limits too, so an
        answer nobody reads any more stops by itself."""
        self.warm_up()
        started = time.monotonic()
        first_deadline, total_deadline = started + self.first_token_timeout, started + self.total_timeout
        request = {"messages": list(messages), "stream": True, "max_tokens": self.max_tokens, "temperature": 0.0,
                   "return_progress": True}
        pieces: queue.Queue[Any] = queue.Queue()
        stop, wrote = threading.Event(), threading.Event()
        finished = object()

        def on_chunk(chunk: Any) -> bool:  # True cancels the request
            try:
                now = time.monotonic()
                if stop.is_set() or now > total_deadline or (not wrote.is_set() and now > first_deadline):
                    return True
                events = chunk if isinstance(chunk, list) else [chunk]
                if any(isinstance(event, dict) and "prompt_progress" in event for event in events):
                    return False  # reading the prompt: a chance to cancel, nothing to show
                pieces.put(events)
                wrote.set()
                return False
            except BaseException as error:  # the binding swallows what a callback raises
                pieces.put(GeneratorError(f"the local model {self.name} failed: {error}"))
                return True

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
                deadline = total_deadline if wrote.is_set() else min(first_deadline, total_deadline)
                try:
                    item = pieces.get(timeout=max(0.0, deadline - time.monotonic()))
                except queue.Empty:
                    if wrote.is_set():
                        raise GeneratorError(f"the local model {self.name} was still answering after "
                                             f"{self.total_timeout:g} s: stopped (RAG_LLM_ANSWER_TIMEOUT)") from None
                    raise GeneratorError(f"the local model {self.name} wrote nothing in {self.first_token_timeout:g} "
                                         "s: stopped (allow more with RAG_LLM_TIMEOUT, or use a smaller model)") from None
                if item is finished:
                    return
                if isinstance(item, GeneratorError):
                    raise item
                for event in item:
                    yield chat_chunk_text(event, f"model {self.name}")
        finally:
            stop.set()  # a time-out, an error or a reader that stopped reading cancels the generation


def _make_private(params: Any, socket_path: str) -> None:
    """Point llama.cpp's server at a UNIX socket, with a random API key, no CORS and no extras.
    Field names differ between xllamacpp releases (hostname/hostnames, webui/ui)."""
    if hasattr(params, "hostnames"):
        params.hostnames = [socket_path]
    else:
        params.hostname = socket_path
    params.api_keys = [secrets.token_urlsafe(32)]
    for name, value in (("cors_origins", ""), ("cors_credentials", False), ("ui", False), ("webui", False),
                        ("endpoint_slots", False), ("endpoint_metrics", False), ("endpoint_props", False),
                        ("n_threads_http", 1)):
        if hasattr(params, name):
            setattr(params, name, value)


def without_repetition(pieces: Iterable[str], words: int = REPEAT_WORDS) -> Iterator[str]:
    """The pieces of a reply until it repeats itself: once its newest `words` words already
    occurred in it, the reply ends before them (small models at temperature 0 loop, copying a
    passage again and again until the token limit). The newest words are held back until
    they are known not to repeat, so a repetition is never shown."""
    text, shown, seen, checked = "", 0, set(), 0
    for piece in pieces:
        text += piece
        starts = [match.start() for match in re.finditer(r"\S+", text)][:-1]  # the last word may grow
        tokens = [word.lower() for word in re.findall(r"\S+", text)][: len(starts)]
        for first in range(checked, len(tokens) - words + 1):
            run = tuple(tokens[first : first + words])
            checked = first + 1
            if run in seen:
                if starts[first] > shown:
                    yield text[shown : starts[first]].rstrip()
                return
            seen.add(run)
        safe = starts[-words] if len(starts) >= words else 0
        if safe > shown:
            yield text[shown:safe]
            shown = safe
    if len(text) > shown:
        yield text[shown:]


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
