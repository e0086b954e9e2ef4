"""`serve`: `watch` in a browser, through textual-serve, behind a token.

Bound to 127.0.0.1 by default (reach it with an SSH tunnel: `ssh -L 8000:127.0.0.1:8000 host`).
Every request but the static files (JS, CSS, fonts) needs the token: `/?token=…` the first time,
which sets an HttpOnly, SameSite=Strict cookie that the page's websocket then carries (the page
builds the websocket URL itself, so a query string cannot ride along). Without it: 403.
"""

from __future__ import annotations

import hmac
import secrets
import shlex
import sys
from pathlib import Path
from typing import Any

COOKIE = "autoresearch_token"


def new_token() -> str:
    return secrets.token_urlsafe(18)


def make_server(config_path: Path, token: str, host: str = "127.0.0.1", port: int = 8000, public_url: str | None = None) -> Any:
    from aiohttp import web
    from textual_serve.server import Server

    command = shlex.join([sys.executable, "-m", "autoresearch_tui", "watch", "--config", str(Path(config_path).resolve())])

    class TokenServer(Server):
        """textual-serve's server with a token check in front of the page, the websocket and downloads."""

        def __init__(self) -> None:
            super().__init__(command, host=host, port=port, title="autoresearch-tui watch", public_url=public_url)
            self._fixed_url = public_url is not None

        async def _make_app(self) -> web.Application:
            app = await super()._make_app()
            app.middlewares.append(self._guard)
            return app

        @web.middleware
        async def _guard(self, request: web.Request, handler: Any) -> web.StreamResponse:
            if request.path.startswith("/static/"):
                return await handler(request)
            given = request.query.get("token") or request.cookies.get(COOKIE) or ""
            if not hmac.compare_digest(given.encode(), token.encode()):
                return web.Response(status=403, text="autoresearch-tui serve: this page needs the token printed when the "
                                                     "server started: open /?token=…\n")
            if request.path == "/" and not self._fixed_url:
                # the websocket goes back to the host the browser used (an SSH tunnel's localhost:PORT)
                self.public_url = f"{request.scheme}://{request.host}"
            response = await handler(request)
            if request.query.get("token") and isinstance(response, web.Response):
                response.set_cookie(COOKIE, token, httponly=True, samesite="Strict")
            return response

    return TokenServer()


def serve(config_path: Path, host: str, port: int, token: str | None) -> int:
    token = token or new_token()
    shown = "127.0.0.1" if host in ("0.0.0.0", "::") else host
    print(f"autoresearch-tui serve: open http://{shown}:{port}/?token={token}", flush=True)
    if host in ("127.0.0.1", "localhost", "::1"):
        print(f"  from your laptop: ssh -L {port}:127.0.0.1:{port} <this host>, then open the link above", flush=True)
    else:
        print(f"  warning: listening on {host}: anyone who can reach this port and has the token can watch", flush=True)
    make_server(config_path, token, host, port).serve()
    return 0
