"""RunPod's API behind one interface (`PodApi`): what both generations share, and which one to use.

Both backends turn RunPod's answers into the same few outcomes, so the provider's fallback logic
does not care which one spoke: a PodInfo, NoCapacityError (try the next candidate), SkipCandidate
(this pool is not allowed), RetryableApiError (same candidate again, after a pause), or a fatal
ApiError (bad key, no balance, bad request: stop before renting anything else).

The key travels only in the Authorization header; it is never part of a URL, a log or an error.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol, TypeVar

import requests

from tasks.core.errors import ProviderError
from tasks.core.retry import GaveUp, Policy, retry

log = logging.getLogger("fullcycle")

CAPACITY_MARKERS = ("no longer any instances available", "no instances available", "not enough free")
T = TypeVar("T")


class ApiError(ProviderError):
    """Fatal: retrying or another candidate will not help."""


class RetryableApiError(ProviderError):
    def __init__(self, message: str, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class Unanswered(ApiError):
    """RunPod kept answering 429/5xx or not at all for the whole retry: its answer is unknown, which
    is never an answer (a pod it could not describe may still be billing)."""


class Gone(ApiError):
    """The endpoint answered 410 Gone: that API generation is retired."""


class SkipCandidate(ProviderError):
    """This GPU/cloud pool is not open to the account (REST 403): try the next."""


@dataclass
class CreateRequest:
    name: str
    gpu_type: str
    cloud_type: str
    gpu_count: int
    template_id: str
    image_name: str
    min_vcpu_count: int
    min_memory_gb: int
    volume_gb: int
    container_disk_gb: int
    public_key: str = ""
    support_public_ip: bool = True  # GraphQL only; without it a COMMUNITY pod may have no public IP
    network_volume_id: str = ""  # mounted at /workspace instead of a pod volume: venv and models persist
    data_center_id: str = ""  # the network volume's data center: the pod must be placed there
    terminate_after: str = ""  # dead-man's switch on RunPod's side (GraphQL only; docs say unreliable)
    min_cuda_version: str = ""  # hosts whose driver supports at least this CUDA ("12.8")
    env: dict[str, str] = field(default_factory=dict)

    @property
    def pod_env(self) -> dict[str, str]:
        """The pod's environment. PUBLIC_KEY feeds the container's own sshd (direct ssh); RunPod's proxy
        authenticates with the account's registered keys or, for this pod alone, SSH_PUBLIC_KEY
        (pods/configuration/use-ssh.mdx): both carry our key, so neither path depends on the account."""
        keys = {"PUBLIC_KEY": self.public_key, "SSH_PUBLIC_KEY": self.public_key} if self.public_key else {}
        return dict(self.env, **keys)


@dataclass
class Offer:
    """One GPU type in one cloud as the catalogue lists it now."""

    gpu: str
    cloud: str
    price_per_hr: float | None  # list price for the pod's gpu_count
    memory_gb: int | None
    availability: str | None  # NONE, LOW, MEDIUM, HIGH (None: not said)


KNOWN_CUDA = ("12.4", "12.6", "12.8", "12.9", "13.0", "13.1", "13.2")  # what RunPod's hosts report (late 2026)


def _version(text: str) -> tuple[int, ...]:
    return tuple(int(part) for part in text.split("."))


RETIRED = ('RunPod has retired its GraphQL API ({detail}): set [runpod] api = "rest" in fullcycle.toml '
           '(the REST v2 API does everything this tool needs); nothing was rented')


@dataclass
class PodInfo:
    id: str
    name: str | None = None
    status: str | None = None  # RUNNING, EXITED, TERMINATED, ... (GraphQL: desiredStatus)
    running: bool = False  # the container is up (runtime present), not just desired
    cost_per_hr: float | None = None
    gpu: str | None = None
    host_id: str | None = None  # gateway ssh user
    public_ip: str | None = None  # direct ssh, from the tcp mapping of port 22
    ssh_port: int | None = None
    ssh_user: str | None = None  # the direct login user where the API says (v2 ssh.direct.username)
    uptime_s: float | None = None
    image: str | None = None
    rank: int | None = None  # a cluster member's node rank (null until RunPod assigns it)
    overlay_ip: str | None = None  # a cluster member's address on the cluster's private network
    cluster: bool = False  # the reaper's row is an Instant Cluster (ended whole), not a pod


def _retry_after(resp: requests.Response) -> float | None:
    try:
        return float(resp.headers.get("Retry-After", ""))
    except ValueError:
        return None


def _detail(resp: requests.Response) -> str:
    """What the server said about its error (problem+json `detail`, a GraphQL message), short."""
    try:
        body = resp.json()
    except ValueError:
        return ""
    if not isinstance(body, dict):
        return ""
    said = body.get("detail") or "; ".join(e.get("message", "") for e in body.get("errors") or [] if isinstance(e, dict))
    return f": {str(said)[:200]}" if said else ""


def with_retries(call: Callable[[], T], what: str, attempts: int = 6, base_delay: float = 1.0,
                 sleep: Callable[[float], None] = time.sleep) -> T:
    """The one way every call to RunPod meets a 429, a 5xx or a timeout: exponential back-off that
    honours Retry-After; when the tries are spent, Unanswered (the answer is unknown, not "no")."""
    policy = Policy(attempts=attempts, delay=base_delay)
    try:
        return retry(call, what, policy, (RetryableApiError,), wait_hint=lambda exc: getattr(exc, "retry_after", None),
                     sleep=sleep)
    except GaveUp as exc:
        raise Unanswered(str(exc)) from None


class Http:
    """One session with the key in its Authorization header; every request goes through `with_retries`
    except those that must not be repeated blindly (a create: its caller looks for what it made first)."""

    def __init__(self, api_key: str, timeout: float = 30.0, retry_base_s: float = 1.0, attempts: int = 6) -> None:
        self.session = requests.Session()
        self.session.headers["Authorization"] = f"Bearer {api_key}"
        self.session.headers["User-Agent"] = "fullcycle"
        self.timeout = timeout
        self.retry_base_s, self.attempts = retry_base_s, attempts
        self.calls = 0

    def retrying(self, call: Callable[[], T], what: str) -> T:
        return with_retries(call, what, attempts=self.attempts, base_delay=self.retry_base_s)

    def request(self, method: str, url: str, *, once: bool = False, **kw: Any) -> requests.Response:
        """The response to a request that RunPod answered (any status but 429 and 5xx); `once` leaves
        the retry to the caller."""
        if once:
            return self.send(method, url, **kw)
        return self.retrying(lambda: self.send(method, url, **kw), f"{method} {url.split('?')[0]}")

    def send(self, method: str, url: str, **kw: Any) -> requests.Response:
        """One try: RetryableApiError for 429, 5xx and a connection that failed or timed out."""
        self.calls += 1
        kw.setdefault("timeout", self.timeout)
        try:
            resp = self.session.request(method, url, **kw)
        except (requests.ConnectionError, requests.Timeout) as exc:
            raise RetryableApiError(f"{method} {url}: {type(exc).__name__}") from None
        if resp.status_code == 401:
            raise ApiError("RunPod rejected the API key (HTTP 401): check RUNPOD_API_KEY")
        if resp.status_code == 402:
            raise ApiError("RunPod says the account has no balance (HTTP 402): add credit, nothing was rented")
        if resp.status_code == 410:
            raise Gone(f"HTTP 410 Gone from {url}")
        if resp.status_code == 429 or resp.status_code >= 500:
            raise RetryableApiError(f"HTTP {resp.status_code} from {url}{_detail(resp)}", _retry_after(resp))
        return resp


class PodApi(Protocol):
    """What the provider asks of RunPod, whichever API generation answers it."""

    name: str
    has_billing: bool  # whether billed() can ever answer (REST); GraphQL has no billing record

    @property
    def calls(self) -> int:
        """HTTP requests sent so far (the summary and the benchmarks count them)."""

    def check_key(self) -> None:
        """Fail (ApiError) before anything is rented when the key is missing or refused."""

    def create(self, req: CreateRequest) -> PodInfo:
        """Rent one pod of `req`'s GPU and cloud type; NoCapacityError when none is free."""

    def get(self, pod_id: str) -> PodInfo | None:
        """The pod as the API sees it now; None only when the API says it does not exist (404), never
        for an error: an error raises."""

    def terminate(self, pod_id: str) -> None:
        """End the pod; idempotent (an unknown pod is already gone)."""

    def list(self) -> list[PodInfo]:
        """Every pod on the account."""

    def volume_data_center(self, volume_id: str) -> str | None:
        """The data center a network volume lives in (None when the account has no such volume)."""

    def account_keys(self) -> list[str] | None:
        """The account's registered ssh public keys (what RunPod's proxy lets in); None when this API
        cannot say."""

    def catalog(self, clouds: tuple[str, ...], gpu_count: int) -> list[Offer] | None:
        """Every GPU type's price, memory and availability per cloud; None when this API has none."""

    def datacenter_availability(self) -> dict[str, dict[str, str]] | None:
        """data center -> GPU type -> availability level; None when this API has none."""

    def billed(self, pod_id: str, since: str) -> float | None:
        """What RunPod billed for the pod since `since` (USD); None until billing shows it."""

    def logs(self, pod_id: str, tail: int = 200) -> str | None:
        """The pod's container and system log (the last `tail` lines); None when not offered."""
