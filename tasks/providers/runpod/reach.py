"""Reaching a RunPod pod with no human step: which endpoint, which user, which connection mode.

Direct tcp/22 first, whenever the pod publishes it (the user from the API where it says, else
root, then the image's user); RunPod's ssh gateway is the fallback. The gateway may (a) run
`ssh -T host cmd`, (b) run it but lose stdout, or (c) refuse it and offer only a PTY shell: the
first contact finds out which, and the mode is recorded in pod.json and the summary:
`direct`, `gateway-exec` (with `stdout-unreliable` noted in case b) or `gateway-pty`.

An answer that names a permanent condition is never taken for "not up yet": a PTY refusal
switches to the PTY transport at once, and a login refused for every user fails at once, quoting
what the pod or the gateway said.
"""

from __future__ import annotations

import logging
import re
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from tasks.core.errors import ProviderError
from tasks.core.modes import ConnectionMode, parse
from tasks.core.retry import Deadline
from tasks.transport.connection import PtyConnection, Result, SshConnection
from tasks.transport.pty import refuses_exec

log = logging.getLogger("fullcycle")

TRANSIENT = re.compile(r"connection (refused|timed out|reset|closed)|no route to host|kex_exchange_identification|"
                       r"broken pipe|network is unreachable|operation timed out|timed out", re.IGNORECASE)
DENIED = re.compile(r"permission denied|authentication failed|too many authentication failures", re.IGNORECASE)
DENIALS_BEFORE_GIVING_UP = 3  # a just-started pod may not have installed our key yet


@dataclass
class Endpoint:
    kind: str  # direct | gateway
    user: str
    host: str
    port: int
    forced_mode: ConnectionMode | None = None  # connection.json may force one mode

    @property
    def exec_mode(self) -> ConnectionMode:
        return ConnectionMode.DIRECT if self.kind == "direct" else ConnectionMode.GATEWAY_EXEC
    last: str = ""
    denied: int = 0

    def describe(self) -> str:
        return f"{self.user}@{self.host}:{self.port} ({self.kind})"


@dataclass
class Reached:
    mode: ConnectionMode
    endpoint: Endpoint
    notes: list[str] = field(default_factory=list)


def said(result: Result) -> str:
    """What the other end answered, stdout included: a gateway may write its refusal there."""
    text = (result.stderr.strip() + " " + result.stdout.decode("utf-8", "replace").strip()).strip()
    return text[-400:] or f"exit {result.exit_code} and no message"


class Prober:
    """Tries endpoints in order until one answers a probe command, against a deadline."""

    def __init__(self, make_exec: Any, make_pty: Any, probe_command: str, deadline_s: float, pause_s: float,
                 timeout_s: float, direct_grace_s: float = 0.0,
                 refresh: Callable[[], list[Endpoint]] | None = None, refresh_every_s: float = 5.0) -> None:
        self.make_exec, self.make_pty = make_exec, make_pty
        # Direct ssh is waited for this long: RunPod publishes the direct port late (after the proxy),
        # and before its sshd listens. `refresh` reads the API again while only the proxy is known.
        self.grace = Deadline(direct_grace_s)
        self.refresh, self.refresh_every_s = refresh, refresh_every_s
        self.refreshed_at = time.monotonic()
        self.started = time.monotonic()
        self.notes: list[str] = []
        self.token = secrets.token_hex(6)
        self.command = f"{probe_command}; printf '%s%s\\n' FCPROBE {self.token}"
        self.deadline = Deadline(deadline_s)
        self.pause_s, self.timeout_s = pause_s, timeout_s

    def _answered(self, result: Result) -> bool:
        return result.exit_code == 0 and f"FCPROBE{self.token}".encode() in result.stdout

    def _try_pty(self, ep: Endpoint) -> Reached | None:
        """The PTY shell, once; None while it does not answer (the pod behind the gateway may
        still be starting), with what it said kept for the final error."""
        conn = self.make_pty(ep)
        try:
            result = conn.run(self.command, timeout=self.timeout_s)
        finally:
            conn.close()
        if self._answered(result):
            return Reached(ConnectionMode.GATEWAY_PTY, ep)
        ep.last = f"PTY shell: {said(result)}"
        return None

    def _try_exec(self, ep: Endpoint) -> Reached | None:
        result = self.make_exec(ep).run(self.command, timeout=self.timeout_s)
        ep.last = said(result)
        if self._answered(result):
            return Reached(ep.exec_mode, ep)
        if refuses_exec(result.stdout + result.stderr.encode()):
            log.info("%s answered %r: switching to the PTY transport", ep.describe(), ep.last)
            ep.forced_mode = ConnectionMode.GATEWAY_PTY  # a permanent answer: exec is never tried there again
            return self._try_pty(ep)
        if result.exit_code == 0:  # it ran, but what it printed never came back: ask once more
            again = self.make_exec(ep).run(self.command, timeout=self.timeout_s)
            if self._answered(again):
                return Reached(ep.exec_mode, ep, ["stdout lost once at the first contact"])
            if again.exit_code == 0:
                return Reached(ep.exec_mode, ep,
                               ["stdout-unreliable: commands run, their output does not always come back; "
                                "every answer that matters is re-read from a file on the pod"])
            ep.last = said(again)
        if DENIED.search(ep.last):
            ep.denied += 1
        return None

    def _direct_may_still_come(self, endpoints: list[Endpoint]) -> bool:
        """Within the grace period a direct endpoint that is not up yet (refused, timed out), or not
        published yet while the API can still be asked, is waited for: the gateway is for pods whose
        direct ssh does not come, not for a slow sshd or a late port."""
        if self.grace.passed():
            return False
        if self.refresh is not None and not any(ep.kind == "direct" for ep in endpoints):
            return True
        return any(ep.kind == "direct" and ep.denied < DENIALS_BEFORE_GIVING_UP
                   and (not ep.last or TRANSIENT.search(ep.last)) for ep in endpoints)

    def _refreshed(self, endpoints: list[Endpoint]) -> list[Endpoint]:
        """The endpoints again from the API, while it names no direct one yet and the grace lasts."""
        if (self.refresh is None or self.grace.passed() or any(ep.kind == "direct" for ep in endpoints)
                or time.monotonic() - self.refreshed_at < self.refresh_every_s):
            return endpoints
        self.refreshed_at = time.monotonic()
        try:
            fresh = self.refresh()
        except ProviderError as exc:  # an unanswered read is no reason to stop probing what is known
            log.info("re-reading the pod's ssh endpoints failed: %s", exc)
            return endpoints
        direct = [ep for ep in fresh if ep.kind == "direct"]
        if not direct:
            return endpoints or fresh
        waited = time.monotonic() - self.started
        log.info("The API published direct ssh (%s) %.0f s after the proxy: trying it first", direct[0].describe(), waited)
        self.notes.append(f"direct ssh published {waited:.0f} s after the proxy (re-read until it came)")
        return direct + [ep for ep in endpoints if ep.kind != "direct"]

    def reach(self, endpoints: list[Endpoint], pod_id: str) -> Reached:
        if not endpoints and self.refresh is None:
            raise ProviderError(f"pod {pod_id} publishes no ssh endpoint (no public tcp/22, no gateway user)")
        while True:
            endpoints = self._refreshed(endpoints)
            reached = self._round(endpoints)
            if reached:
                reached.notes[:0] = self.notes
                if reached.endpoint.kind == "gateway" and self.refresh is not None and not any(
                        ep.kind == "direct" for ep in endpoints):
                    reached.notes.append(f"no direct ssh endpoint within {self.grace.seconds:.0f} s "
                                         f"([ssh] direct_grace_s): the gateway")
                return reached
            live = [ep for ep in endpoints if ep.denied < DENIALS_BEFORE_GIVING_UP]
            if endpoints and not live:
                raise ProviderError(f"every login to pod {pod_id} was refused: "
                                    + "; ".join(f"{ep.describe()} said {ep.last!r}" for ep in endpoints))
            if self.deadline.passed():
                raise ProviderError(f"ssh to pod {pod_id} never answered: "
                                    + ("; ".join(f"{ep.describe()} said {ep.last!r}" for ep in endpoints)
                                       or "it published no ssh endpoint (no public tcp/22, no gateway user)")
                                    + "; the pod will be terminated")
            time.sleep(min(self.pause_s, self.deadline.left()))

    def _round(self, endpoints: list[Endpoint]) -> Reached | None:
        """Each endpoint tried once, in order (the gateway only once direct may no longer come)."""
        for ep in endpoints:
            if ep.denied >= DENIALS_BEFORE_GIVING_UP:
                continue
            if ep.kind == "gateway" and self._direct_may_still_come(endpoints):
                continue
            reached = self._try_pty(ep) if ep.forced_mode is ConnectionMode.GATEWAY_PTY else self._try_exec(ep)
            if reached:
                return reached
        return None


DIRECT_USERS = ("root", "unsloth")  # tried in order when the API names no ssh user (the official image's is unsloth)


def endpoints(info: Any, override: dict[str, Any] | None, gateway_host: str, gateway_port: int) -> list[Endpoint]:
    """Direct first (API user, else root, then the image's users), the gateway last."""
    if override:
        forced = parse(override["connection_mode"]) if override.get("connection_mode") else None
        kind = "gateway" if (forced and forced.is_gateway) or override["ssh_host"] == gateway_host else "direct"
        return [Endpoint(kind, override["ssh_user"], override["ssh_host"], override["ssh_port"], forced)]
    found = []
    if info.public_ip and info.ssh_port:
        users = [info.ssh_user] if info.ssh_user else list(DIRECT_USERS)
        found += [Endpoint("direct", u, info.public_ip, info.ssh_port) for u in users]
    if info.host_id:
        found.append(Endpoint("gateway", info.host_id, gateway_host, gateway_port))
    return found


def connection(mode: ConnectionMode, **fields: Any) -> SshConnection:
    """The connection class for a recorded mode."""
    if mode is ConnectionMode.GATEWAY_PTY:
        return PtyConnection(**fields, mode=mode)
    return SshConnection(**fields, mode=mode)


def key_fingerprint(line: str) -> str:
    """An authorized_keys line's type and key, without its comment (the account may hold another)."""
    return " ".join(line.split()[:2])


def account_key(api: Any, public_key: str, key_setting: str) -> str:
    """Whether RunPod's proxy knows our key from the account (GET /v2/account/ssh-keys, read only: a PUT
    would replace the user's whole set). When it does not, the gateway relies on the pod's own
    SSH_PUBLIC_KEY, which every pod here carries."""
    if not public_key:
        return "no public key beside [runpod] ssh_key_path: neither the pod's sshd nor the proxy knows it"
    try:
        keys = api.account_keys()
    except ProviderError as exc:
        return f"not read ({str(exc)[:120]}); the proxy relies on the pod's SSH_PUBLIC_KEY"
    if keys is None:
        return f"not asked ({api.name} API); the proxy relies on the pod's SSH_PUBLIC_KEY"
    if key_fingerprint(public_key) in {key_fingerprint(k) for k in keys}:
        return "registered with the account"
    note = (f"not registered with the account ({len(keys)} key(s) there): RunPod's ssh proxy lets this key in "
            f"only through the pod's SSH_PUBLIC_KEY, which is sent; your account's keys are left as they are")
    log.warning("Your key %s.pub is %s", key_setting, note)
    return note
