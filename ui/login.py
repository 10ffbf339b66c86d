"""Who may use a page served off this machine: the login from the environment, checked slowly
for a client that keeps getting it wrong.

On a loopback address the page needs no login; anywhere else it asks for RAG_UI_USER and
RAG_UI_PASSWORD unless `rag serve --insecure` says otherwise.
"""

from __future__ import annotations

import asyncio
import hmac
import ipaddress
import logging
import time
from collections.abc import Awaitable, Callable, Mapping
from contextvars import ContextVar
from dataclasses import dataclass, field
from typing import Any

from starlette.middleware import Middleware
from starlette.types import ASGIApp, Receive, Scope, Send

from rag import RagError

log = logging.getLogger(__name__)

_LOOPBACK_NAMES = frozenset({"localhost", "ip6-localhost"})

LOGIN_DELAY_FIRST = 0.5
"""Seconds a wrong login is held: the first, doubled for each wrong one in a row, up to the max."""
LOGIN_DELAY_MAX = 8.0
LOGIN_FORGET_AFTER = 900.0
"""Seconds without a wrong login after which a client's count starts again."""
_LOGIN_CLIENTS_KEPT = 10_000
"""Clients whose wrong logins are counted at once; the oldest are forgotten first."""
_login_client: ContextVar[str] = ContextVar("login_client", default="")

Sleep = Callable[[float], Awaitable[None]]


def login_options(login: tuple[str, str] | None, sleep: Sleep = asyncio.sleep) -> dict[str, Any]:
    """The launch options that ask for `login`, if any: the check, slowed down for a client that
    keeps getting it wrong, and the middleware that tells the check which client is trying."""
    if login is None:
        return {"auth": None}
    return {"auth": login_check(*login, sleep=sleep), "app_kwargs": {"middleware": [Middleware(_LoginClient)]}}


def login_check(user: str, password: str, sleep: Sleep = asyncio.sleep) -> Callable[[str, str], Awaitable[bool]]:
    """Gradio's login check, with a growing delay per client: a wrong login is answered only
    after `login_delay` of the client's wrong ones in a row, and a client's wrong tries are
    answered one at a time, so 30 guesses take minutes instead of a second. A right login is
    answered at once and clears the count; so does LOGIN_FORGET_AFTER seconds without a wrong one.

    An async function, as Gradio awaits only those and `sleep` must not block its event loop.
    """
    expected = (user.encode(errors="surrogatepass"), password.encode(errors="surrogatepass"))
    clients: dict[str, _Tries] = {}

    async def check(given_user: str, given_password: str) -> bool:
        tries = clients.setdefault(_login_client.get(), _Tries())
        _forget_oldest(clients)
        # Both compared in constant time: the time taken tells nothing about either.
        right = (hmac.compare_digest(given_user.encode(errors="surrogatepass"), expected[0])
                 & hmac.compare_digest(given_password.encode(errors="surrogatepass"), expected[1]))
        if right:  # never queued behind wrong tries from the same address (people behind one NAT)
            tries.wrong = 0
            return True
        async with tries.lock:
            now = time.monotonic()
            if now - tries.last_wrong > LOGIN_FORGET_AFTER:
                tries.wrong = 0
            tries.wrong, tries.last_wrong = tries.wrong + 1, now
            await sleep(login_delay(tries.wrong))
        return False

    return check


def login_delay(wrong: int) -> float:
    """Seconds to hold the answer to the `wrong`-th wrong login in a row: 0.5, 1, 2, 4, 8, 8..."""
    return min(LOGIN_DELAY_FIRST * 2.0 ** min(wrong - 1, 16), LOGIN_DELAY_MAX)


@dataclass
class _Tries:
    """A client's wrong logins in a row, and the lock that has it try one at a time."""

    wrong: int = 0
    last_wrong: float = 0.0
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)


def _forget_oldest(clients: dict[str, _Tries]) -> None:
    """Keep memory bounded whatever the number of addresses trying: forget the clients seen
    first, except those being checked now."""
    excess = len(clients) - _LOGIN_CLIENTS_KEPT
    if excess > 0:
        for client in [client for client, tries in clients.items() if not tries.lock.locked()][:excess]:
            del clients[client]


class _LoginClient:
    """ASGI middleware that tells `login_check` which client is trying: Gradio passes it only the
    user and password. Behind a proxy on this machine, uvicorn takes the client from the
    proxy's X-Forwarded-For."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope.get("client"):
            _login_client.set(scope["client"][0])
        await self.app(scope, receive, send)


def login_for(host: str, insecure: bool, environ: Mapping[str, str]) -> tuple[str, str] | None:
    """The (user, password) Gradio asks for, from RAG_UI_USER and RAG_UI_PASSWORD.

    Loopback needs none. Any other address needs both, unless `insecure` (then a warning):
    the page answers questions and writes uploaded files into the articles folder.
    """
    user, password = environ.get("RAG_UI_USER", ""), environ.get("RAG_UI_PASSWORD", "")
    if bool(user) != bool(password):
        raise RagError("set both RAG_UI_USER and RAG_UI_PASSWORD to require a login, or neither")
    if user:
        return user, password
    if is_loopback(host):
        return None
    if insecure:
        log.warning("serving on %s without a login (--insecure): anyone who can reach this address "
                    "can ask questions and add articles", host)
        return None
    raise RagError(
        f"serving on {host} makes the page reachable from other machines: set RAG_UI_USER and "
        "RAG_UI_PASSWORD to require a login, or pass --insecure to serve without one"
    )


def is_loopback(host: str) -> bool:
    if host.lower() in _LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False
