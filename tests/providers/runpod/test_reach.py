"""Reaching a pod with no human step (tasks/providers/runpod/reach.py): direct first, the gateway's three behaviours."""

from __future__ import annotations

import time

import pytest


class ScriptedConn:
    """Answers probes from a script: one function of (endpoint, command) per connection kind."""

    def __init__(self, answer, log, ep, kind):
        self.answer, self.log, self.ep, self.kind = answer, log, ep, kind

    def run(self, command, timeout=None):
        from tasks.transport.connection import Result

        self.log.append((self.kind, self.ep.user))
        code, out, err = self.answer(self.ep, self.kind, command)
        return Result(code, out, err)

    def close(self):
        pass


def _prober(answer, log, deadline=5.0):
    from tasks.providers.runpod.reach import Prober

    return Prober(make_exec=lambda ep: ScriptedConn(answer, log, ep, "exec"),
                  make_pty=lambda ep: ScriptedConn(answer, log, ep, "pty"), probe_command="true",
                  deadline_s=deadline, pause_s=0.01, timeout_s=1)


def _token(command: str) -> bytes:
    return ("FCPROBE" + command.rsplit(" ", 1)[1]).encode() + b"\n"


def test_a_pty_refusal_switches_at_once():
    from tasks.providers.runpod.reach import Endpoint

    log = []

    def answer(ep, kind, command):
        if kind == "exec":
            return 1, b"Error: Your SSH client doesn't support PTY\r\n", ""
        return 0, _token(command), ""

    reached = _prober(answer, log).reach([Endpoint("gateway", "pod-1a2b", "gw", 22)], "pod")
    assert reached.mode == "gateway-pty" and log == [("exec", "pod-1a2b"), ("pty", "pod-1a2b")]


def test_direct_users_are_probed_in_turn_and_the_gateway_is_last():
    from tasks.providers.runpod.reach import endpoints

    class Info:
        public_ip, ssh_port, ssh_user, host_id = "203.0.113.9", 40022, None, "pod-1a2b"

    found = endpoints(Info, None, "ssh.runpod.io", 22)
    assert [(e.kind, e.user) for e in found] == [("direct", "root"), ("direct", "unsloth"), ("gateway", "pod-1a2b")]
    log = []

    def answer(ep, kind, command):
        if ep.user == "root":
            return 255, b"", "root@203.0.113.9: Permission denied (publickey)."
        return 0, _token(command), ""

    reached = _prober(answer, log).reach(found, "pod")
    assert reached.mode == "direct-ssh" and reached.endpoint.user == "unsloth"


def test_refused_logins_fail_quickly_and_quote_the_answer():
    from tasks.core.errors import ProviderError
    from tasks.providers.runpod.reach import Endpoint

    started = time.monotonic()
    with pytest.raises(ProviderError, match="Permission denied"):
        _prober(lambda ep, kind, c: (255, b"", "Permission denied (publickey)."), [], deadline=60).reach(
            [Endpoint("direct", "root", "h", 22)], "pod")
    assert time.monotonic() - started < 5


def test_a_silent_refusal_on_stdout_is_quoted_when_the_deadline_passes():
    from tasks.core.errors import ProviderError
    from tasks.providers.runpod.reach import Endpoint

    with pytest.raises(ProviderError, match="gateway says no"):
        _prober(lambda ep, kind, c: (1, b"gateway says no", ""), [], deadline=0.1).reach(
            [Endpoint("gateway", "u", "h", 22)], "pod")


def test_lost_stdout_is_detected_and_noted():
    from tasks.providers.runpod.reach import Endpoint

    reached = _prober(lambda ep, kind, c: (0, b"", ""), []).reach([Endpoint("gateway", "u", "h", 22)], "pod")
    assert reached.mode == "gateway-exec" and "stdout-unreliable" in reached.notes[0]


def test_a_pty_shell_that_is_not_up_yet_is_retried_without_asking_exec_again():
    from tasks.providers.runpod.reach import Endpoint

    log, tries = [], []

    def answer(ep, kind, command):
        if kind == "exec":
            return 1, b"Error: Your SSH client doesn't support PTY\r\n", ""
        tries.append(1)
        return (0, _token(command), "") if len(tries) >= 3 else (255, b"", "the PTY shell never answered")

    reached = _prober(answer, log).reach([Endpoint("gateway", "pod-1a2b", "gw", 22)], "pod")
    assert reached.mode == "gateway-pty" and [k for k, _ in log].count("exec") == 1 and len(tries) == 3


def test_direct_wins_when_its_sshd_comes_up_within_the_grace_period():
    """RunPod lists the direct port before sshd listens: a refused direct connection in the first
    seconds must not pin the run to the gateway that happened to answer first."""
    from tasks.providers.runpod.reach import Endpoint, Prober

    log, tries = [], {"direct": 0}

    def answer(ep, kind, command):
        if ep.kind == "direct":
            tries["direct"] += 1
            if tries["direct"] < 3:
                return 255, b"", "ssh: connect to host 203.0.113.9 port 40022: Connection refused"
        return 0, _token(command), ""

    endpoints = [Endpoint("direct", "root", "203.0.113.9", 40022), Endpoint("gateway", "pod-1a2b", "gw", 22)]
    prober = Prober(make_exec=lambda ep: ScriptedConn(answer, log, ep, "exec"),
                    make_pty=lambda ep: ScriptedConn(answer, log, ep, "pty"), probe_command="true",
                    deadline_s=10, pause_s=0.01, timeout_s=1, direct_grace_s=5)
    reached = prober.reach(endpoints, "pod")
    assert reached.mode == "direct-ssh" and ("exec", "pod-1a2b") not in log, log


def test_the_gateway_serves_a_pod_whose_direct_ssh_never_comes():
    from tasks.providers.runpod.reach import Endpoint, Prober

    log = []

    def answer(ep, kind, command):
        if ep.kind == "direct":
            return 255, b"", "ssh: connect to host 203.0.113.9 port 40022: Connection refused"
        return 0, _token(command), ""

    prober = Prober(make_exec=lambda ep: ScriptedConn(answer, log, ep, "exec"),
                    make_pty=lambda ep: ScriptedConn(answer, log, ep, "pty"), probe_command="true",
                    deadline_s=10, pause_s=0.01, timeout_s=1, direct_grace_s=0.2)
    started = time.monotonic()
    reached = prober.reach([Endpoint("direct", "root", "203.0.113.9", 40022),
                            Endpoint("gateway", "pod-1a2b", "gw", 22)], "pod")
    assert reached.mode == "gateway-exec" and 0.2 <= time.monotonic() - started < 5


def test_a_direct_port_published_after_the_proxy_is_taken_while_the_api_is_read_again():
    """RunPod names the proxy as soon as the pod has a machine and the direct port only once it is
    assigned (PodSsh): while only the proxy is known, the pod is read again within the grace period."""
    from tasks.providers.runpod.reach import Endpoint, Prober

    log, reads = [], []

    def answer(ep, kind, command):
        return 0, _token(command), ""

    def refresh():
        reads.append(1)
        found = [Endpoint("gateway", "pod-1a2b", "gw", 22)]
        return [Endpoint("direct", "root", "203.0.113.9", 40022), *found] if len(reads) >= 3 else found

    prober = Prober(make_exec=lambda ep: ScriptedConn(answer, log, ep, "exec"),
                    make_pty=lambda ep: ScriptedConn(answer, log, ep, "pty"), probe_command="true",
                    deadline_s=10, pause_s=0.01, timeout_s=1, direct_grace_s=5, refresh=refresh, refresh_every_s=0.01)
    reached = prober.reach([Endpoint("gateway", "pod-1a2b", "gw", 22)], "pod")
    assert reached.mode == "direct-ssh" and len(reads) == 3 and ("exec", "pod-1a2b") not in log, log
    assert "direct ssh published" in reached.notes[0]
