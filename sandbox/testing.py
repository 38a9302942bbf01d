"""Run a sandbox for tests and demos: in a background thread, or as a separate process.

This module owns `SandboxServer` (uvicorn on 127.0.0.1:0 in a thread of this process),
`SandboxProcess` (the `serve` command in a child process, for tests that kill it), and
`connect()`, a complete OAuth authorisation-code flow with PKCE against a running sandbox that
returns a token set, so tests do not each re-implement the consent dance.

It must not reach into the server's internals beyond what a client could do: everything after
start-up goes through HTTP (the admin API included).
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import json
import os
import secrets
import signal
import subprocess
import sys
import tempfile
import threading
import time
import urllib.parse
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any

import httpx
import uvicorn

from sandbox.app import SandboxSettings, create_app


@dataclass(frozen=True)
class TokenSet:
    access_token: str
    refresh_token: str | None
    expires_in: int
    scope: str
    id_token: str | None = None


def pkce_pair() -> tuple[str, str]:
    """A code verifier and its S256 challenge (RFC 7636)."""
    verifier = secrets.token_urlsafe(48)[:64]
    challenge = base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).decode().rstrip("=")
    return verifier, challenge


def connect(info: dict[str, Any], *, scope: str | None = None, client: httpx.Client | None = None) -> TokenSet:
    """Run the authorisation-code + PKCE flow for all the demo user's organisations.

    Works with auto-consent on (a redirect straight back) and off (ticks every organisation on
    the consent page and submits it).
    """
    owns_client = client is None
    http = client or httpx.Client(base_url=info["base_url"], timeout=30)
    try:
        verifier, challenge = pkce_pair()
        state = secrets.token_urlsafe(8)
        params = {
            "response_type": "code",
            "client_id": info["client_id"],
            "redirect_uri": info["redirect_uri"],
            "scope": scope or info["scope"],
            "state": state,
            "code_challenge": challenge,
            "code_challenge_method": "S256",
        }
        response = http.get("/identity/connect/authorize", params=params, follow_redirects=False)
        if response.status_code == 200:  # the consent page: allow every organisation listed
            tenants = [t["tenant_id"] for t in info["tenants"]]
            form = [(k, v) for k, v in params.items() if k != "response_type"]
            form += [("tenant", t) for t in tenants] + [("decision", "allow")]
            response = http.post(
                "/identity/connect/authorize",
                content=urllib.parse.urlencode(form),  # `tenant` repeats, so encode the pairs ourselves
                headers={"content-type": "application/x-www-form-urlencoded"},
                follow_redirects=False,
            )
        if response.status_code != 302:
            raise RuntimeError(f"authorize answered {response.status_code}: {response.text[:200]}")
        query = dict(urllib.parse.parse_qsl(urllib.parse.urlsplit(response.headers["location"]).query))
        if "code" not in query or query.get("state") != state:
            raise RuntimeError(f"authorize redirected without a code: {query}")
        token = http.post(
            "/connect/token",
            data={
                "grant_type": "authorization_code",
                "code": query["code"],
                "redirect_uri": info["redirect_uri"],
                "code_verifier": verifier,
            },
            auth=(info["client_id"], info["client_secret"]),
        )
        token.raise_for_status()
        body = token.json()
        return TokenSet(
            access_token=body["access_token"],
            refresh_token=body.get("refresh_token"),
            expires_in=int(body["expires_in"]),
            scope=body.get("scope", ""),
            id_token=body.get("id_token"),
        )
    finally:
        if owns_client:
            http.close()


class _AdminClient:
    """Helpers shared by the thread and process runners; all go through the admin API."""

    base_url: str

    def _admin(self, method: str, path: str, body: dict[str, Any] | None = None, **params: str) -> Any:
        with httpx.Client(base_url=self.base_url, timeout=600) as http:
            response = http.request(method, f"/_sandbox/{path}", json=body, params=params or None)
        response.raise_for_status()
        return response.json()

    def advance(self, days: int, seed: int | None = None) -> dict[str, Any]:
        return self._admin("POST", "advance", {"days": days, **({"seed": seed} if seed is not None else {})})  # type: ignore[no-any-return]

    def truth(self, tenant_id: str) -> dict[str, Any]:
        return self._admin("GET", "truth", tenant=tenant_id)["endpoints"]  # type: ignore[no-any-return]

    def usage(self) -> dict[str, Any]:
        return self._admin("GET", "usage")["tenants"]  # type: ignore[no-any-return]

    def set_faults(self, spec: str | None = None, **faults: Any) -> dict[str, Any]:
        """`set_faults("503=0.5,seed=3")` or `set_faults(p503=0.5, seed=3)`; no arguments clears them."""
        body: dict[str, Any] = {"spec": spec} if spec is not None else dict(faults)
        return self._admin("POST", "faults", body)  # type: ignore[no-any-return]

    def set_limits(self, tenant: str | None = None, *, reset_windows: bool = True, **values: int | None) -> Any:
        body: dict[str, Any] = {**values, "reset_windows": reset_windows}
        if tenant:
            body["tenant"] = tenant
        return self._admin("POST", "limits", body)

    def set_tier(self, tier: str) -> Any:
        return self._admin("POST", "tier", {"tier": tier})

    def set_tokens(self, **values: int) -> Any:
        return self._admin("POST", "tokens", values)

    def skew_identity_clock(self, seconds: int) -> Any:
        return self._admin("POST", "clock", {"identity_skew_s": seconds})

    def connect(self, scope: str | None = None) -> TokenSet:
        return connect(self.info, scope=scope)  # type: ignore[attr-defined]


class SandboxServer(_AdminClient):
    """`with SandboxServer(tmp_path / "sandbox.db", orgs=1) as sandbox:` then talk to `sandbox.base_url`."""

    def __init__(self, state_path: Path | str | None = None, settings: SandboxSettings | None = None, **overrides: Any):
        self._tmp: tempfile.TemporaryDirectory[str] | None = None
        if state_path is None:
            self._tmp = tempfile.TemporaryDirectory(prefix="sandbox-")
            state_path = Path(self._tmp.name) / "sandbox.db"
        self.state_path = Path(state_path)
        defaults: dict[str, Any] = {"auto_consent": True}
        self.settings = SandboxSettings(**{**defaults, **(settings.__dict__ if settings else {}), **overrides})
        self.base_url = ""
        self.info: dict[str, Any] = {}
        self._server: uvicorn.Server | None = None
        self._thread: threading.Thread | None = None

    def __enter__(self) -> SandboxServer:
        app = create_app(self.state_path, self.settings)
        config = uvicorn.Config(
            app,
            host="127.0.0.1",
            port=0,
            log_level="warning",
            lifespan="off",
            access_log=False,
            timeout_graceful_shutdown=1,  # a test's slow-fault request must not hold shutdown
        )
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(target=self._server.run, name="sandbox-server", daemon=True)
        self._thread.start()
        deadline = time.monotonic() + 60
        while not self._server.started:
            if not self._thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError("the sandbox server did not start")
            time.sleep(0.01)
        port = self._server.servers[0].sockets[0].getsockname()[1]
        self.base_url = f"http://127.0.0.1:{port}"
        app.state.runtime.base_url = self.base_url
        self.info = app.state.runtime.info(self.base_url)
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if self._server is not None:
            self._server.should_exit = True
        if self._thread is not None:
            self._thread.join(timeout=30)
        if self._tmp is not None:
            self._tmp.cleanup()


class SandboxProcess(_AdminClient):
    """`strongroom sandbox serve` in a child process; `kill()` ends it without warning."""

    def __init__(self, state_path: Path | str, *args: str, env: dict[str, str] | None = None) -> None:
        self.state_path = Path(state_path)
        self.info_path = self.state_path.with_suffix(".info.json")
        self.args = args
        self.env = env
        self.process: subprocess.Popen[bytes] | None = None
        self.base_url = ""
        self.info: dict[str, Any] = {}

    def start(self, timeout: float = 120) -> SandboxProcess:
        with contextlib.suppress(FileNotFoundError):
            self.info_path.unlink()
        command = [
            sys.executable,
            "-c",
            "import sys; from sandbox.cli import main; sys.exit(main())",
            "serve",
            "--port",
            "0",
            "--state",
            str(self.state_path),
            "--info",
            str(self.info_path),
            *self.args,
        ]
        self.process = subprocess.Popen(command, env={**os.environ, **(self.env or {})})
        deadline = time.monotonic() + timeout
        while not self.info_path.exists():
            if self.process.poll() is not None:
                raise RuntimeError(f"sandbox process exited with {self.process.returncode}")
            if time.monotonic() > deadline:
                self.kill()
                raise RuntimeError("sandbox process did not write its info file")
            time.sleep(0.05)
        self.info = json.loads(self.info_path.read_text())
        self.base_url = self.info["base_url"]
        return self

    def kill(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGKILL)
            self.process.wait(timeout=30)

    def stop(self) -> int | None:
        if self.process is None:
            return None
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.kill()
        return self.process.returncode

    def __enter__(self) -> SandboxProcess:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()
