"""Shared fixtures: a real sshd as the pod, a gateway double, and a fake RunPod API per test."""

from __future__ import annotations

import os
import shutil
import sys
import tempfile
from pathlib import Path

import pytest

from tasks.model import tiny as tinymodel
from tests.doubles import standin
from tests.doubles.fake_runpod import FakeRunpod
from tests.doubles.sshpod import GatewayDouble, Sshd, end_pod_processes
from tests.helpers import make_project

API_KEY = "rpa_SENTINEL_0123456789abcdef"  # a sentinel: the tests check it never leaks

# Compiled bytecode is kept (in the gitignored __pycache__ folders, never uploaded to a pod), also where the
# environment says PYTHONDONTWRITEBYTECODE (container images often do): otherwise every test module is
# rewritten again by each worker and every doit and trainer process compiles the project from source.
sys.dont_write_bytecode = False
os.environ.pop("PYTHONDONTWRITEBYTECODE", None)


SLOW_FIXTURES = {"sshd", "browser", "llama_bin"}  # a real sshd, Chromium, the llama.cpp build


def threads() -> int:
    """The cores one xdist worker may use: torch (OpenMP) and llama.cpp take every core by default, and
    two workers' worth of spinning threads on the same cores make each of them several times slower."""
    workers = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT") or 1)
    return max(1, (os.cpu_count() or 1) // workers)


def pytest_configure(config):
    """One folder for the whole session, every xdist worker included (they inherit the
    environment): the stand-in's adapter and the tiny models are built there once."""
    if hasattr(config, "workerinput"):  # before anything here imports torch; its subprocesses inherit it
        for name in ("OMP_NUM_THREADS", "MKL_NUM_THREADS"):
            os.environ.setdefault(name, str(threads()))
    if not os.environ.get(standin.SHARED_ENV):
        shared = tempfile.mkdtemp(prefix="fullcycle-tests-")
        os.environ[standin.SHARED_ENV] = shared
        config._fullcycle_shared = shared
    # the tiny models are content-keyed: kept between sessions, as the stand-in's adapter is (tests/doubles/standin.py)
    os.environ.setdefault(tinymodel.CACHE_ENV, str(standin.cache_dir() / "tiny-models"))
    os.environ.setdefault("FULLCYCLE_MODEL_CHECKS", str(Path(os.environ[standin.SHARED_ENV]) / "model-checks"))
    controller = not hasattr(config, "workerinput")
    fast_tier = "not slow" in (config.option.markexpr or "")
    if controller and getattr(config.option, "dist", "no") == "loadscope" and fast_tier:
        config.option.dist = "worksteal"  # no module-scoped training in the fast tier: small units balance better
    whole_tier = controller and all(a in ("tests", "tests/") for a in config.args or ["tests"])
    if whole_tier:  # most pipeline tests need the stand-in's adapter: train it while the rest starts (once)
        config._fullcycle_prebuild = standin.prebuild()


def pytest_unconfigure(config):
    build = getattr(config, "_fullcycle_prebuild", None)
    if build is not None and build.poll() is None:
        build.kill()
    shared = getattr(config, "_fullcycle_shared", None)
    if shared:
        shutil.rmtree(shared, ignore_errors=True)


# The modules that take longest (real trainings, the fault matrix, llama.cpp, the browser), longest first:
# xdist hands whole modules to workers (--dist loadscope, pyproject.toml), so starting these first keeps
# one worker from finishing them alone at the end while the other waits.
HEAVY_FIRST = ("tests/post/test_verdict.py", "tests/pipeline/test_fault_matrix.py", "tests/model/test_families.py",
               "tests/providers/runpod/test_provider.py", "tests/pipeline/test_full_cycle.py",
               "tests/pipeline/test_multi_gpu.py", "tests/pipeline/test_overhead.py", "tests/test_bench.py",
               "tests/pod/test_lifecycle.py", "tests/pod/test_gpu_check.py",
               "tests/web/test_app.py", "tests/post/test_llamacpp.py", "tests/data/test_prepare.py")


def pytest_collection_modifyitems(items):
    """What needs a real sshd, a browser or llama.cpp is in the slow tier, whether marked or not; the
    heaviest modules run first."""
    for item in items:
        if SLOW_FIXTURES & set(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.slow)
    rank = {name: i for i, name in enumerate(HEAVY_FIRST)}
    order = {id(item): i for i, item in enumerate(items)}
    items.sort(key=lambda item: (rank.get(item.nodeid.split("::", 1)[0], len(rank)), order[id(item)]))


QWEN3_LIKE = (  # the shape of Qwen3's template: a hybrid-reasoning model's empty think block when thinking is off
    "{% for message in messages %}<|im_start|>{{ message['role'] }}\n{{ message['content'] }}<|im_end|>\n{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% if enable_thinking is defined and not enable_thinking %}"
    "<think>\n\n</think>\n\n{% endif %}{% endif %}")


@pytest.fixture(scope="module")
def qwen3_tokenizer(tmp_path_factory):
    from tokenizers import Tokenizer, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    bpe = Tokenizer(models.BPE())
    bpe.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    bpe.train_from_iterator(["hello there, how are you? " * 20], trainer=trainers.BpeTrainer(
        vocab_size=300, special_tokens=["<|endoftext|>", "<|im_start|>", "<|im_end|>"],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False))
    tok = PreTrainedTokenizerFast(tokenizer_object=bpe, eos_token="<|im_end|>", pad_token="<|endoftext|>")
    tok.chat_template = QWEN3_LIKE
    return tok


def _ssh_available() -> str | None:
    if not Path("/usr/sbin/sshd").exists() and not shutil.which("sshd"):
        return "OpenSSH sshd is not installed (.ci/run installs openssh-server)"
    if os.geteuid() != 0:
        return "the sshd pod double logs in as root: run the ssh tests as root (CI does)"
    return None


@pytest.fixture(scope="session")
def sshd(tmp_path_factory):
    reason = _ssh_available()
    if reason:
        pytest.skip(reason)
    server = Sshd(tmp_path_factory.mktemp("sshd")).start()
    yield server
    server.stop()


@pytest.fixture(scope="session")
def llama_bin() -> Path:
    """The real llama.cpp, built once per machine (tests/llamacpp.py)."""
    from tests import llamacpp

    try:
        folder, facts = llamacpp.build()
    except llamacpp.CannotBuild as why:
        pytest.skip(f"llama.cpp cannot be built here: {why}")
    print(f"\nllama.cpp {facts['version']}: {'cached build' if facts['cached'] else 'built now'}, "
          f"cold build took {facts['seconds']} s on {facts['cores']} cores")
    return folder


@pytest.fixture
def fake_api(request, tmp_path):
    """The RunPod API double; its pods' ssh port is the session's sshd when the test asks for one."""
    server = request.getfixturevalue("sshd") if "sshd" in request.fixturenames else None
    with FakeRunpod(API_KEY, server.port if server else 22) as api:
        api.client_key = server.client_key if server else None  # a cluster's nodes: sshds of their own
        yield api
    # A terminated pod takes its processes with it; on this shared "pod" machine, end this test's
    # pods' process groups (trainings a killed orchestrator left running, watchdogs still sleeping).
    end_pod_processes(tmp_path)


@pytest.fixture
def gateway(sshd, fake_api, tmp_path):
    gw = GatewayDouble(tmp_path, fake_api.route_host, sshd.client_key, keys=fake_api.proxy_keys).start()
    yield gw
    gw.stop()


def runpod_project(root: Path, sshd: Sshd | None, api: FakeRunpod, *, backend: str = "rest", gateway: GatewayDouble | None = None,
                   **sections):
    """A project that rents from the fake API; the pod's folders live under `root/pod`."""
    pod = root / "pod"
    key = sshd.client_key if sshd else root / "unused-ssh-key"  # a test that never opens ssh has no sshd
    if not sshd:
        root.mkdir(parents=True, exist_ok=True)
        key.write_text("not a key: this test never opens ssh\n")
    runpod = {"api": backend, "ssh_key_path": str(key), "poll_interval_s": 0.05, "ready_timeout_s": 20,
              "retry_base_s": 0.05, "billing_wait_s": 0.05}
    if gateway:
        runpod.update({"gateway_host": "127.0.0.1", "gateway_port": gateway.port})
    runpod.update(sections.pop("runpod", {}))
    # direct ssh is waited for 1 s (90 by default): the double publishes it at once, or never
    ssh = {"probe_timeout_s": 20, "reconnect_delay_s": 0.2, "direct_grace_s": 1, **sections.pop("ssh", {})}
    remote = {"input_dir": str(pod / "workspace" / "input"), "output_dir": str(pod / "output" / "adapter"),
              "work_dir": str(pod / "workspace" / "fullcycle"), "python": sys.executable,
              "hf_home": str(pod / "hf-home"), **sections.pop("remote", {})}
    env = {"RUNPOD_API_KEY": API_KEY, "RUNPOD_GRAPHQL_URL": f"{api.url}/graphql", "RUNPOD_API_URL": api.url}
    return make_project(root, extra_env=env, project={"provider": "runpod"}, runpod=runpod, ssh=ssh, remote=remote,
                        **sections)


def _table(terminalreporter, title: str, rows: list[dict]) -> None:
    if not rows:
        return
    terminalreporter.section(title)
    cols = list(rows[0])
    widths = [max(len(c), *(len(str(r[c])) for r in rows)) for c in cols]
    terminalreporter.write_line("  ".join(c.ljust(w) for c, w in zip(cols, widths)))
    for row in rows:
        terminalreporter.write_line("  ".join(str(row[c]).ljust(w) for c, w in zip(cols, widths)))


def table_row(table: str, row: dict) -> None:
    """A row of a table printed at the end of the session; workers (xdist) write them to the shared folder."""
    import json

    with (Path(os.environ[standin.SHARED_ENV]) / f"{table}.jsonl").open("a") as out:
        out.write(json.dumps(row) + "\n")


def pytest_terminal_summary(terminalreporter):
    import json

    for table, title in (("fault-matrix", "fault matrix"), ("families", "model families")):
        path = Path(os.environ.get(standin.SHARED_ENV, "/nonexistent")) / f"{table}.jsonl"
        if path.is_file():
            _table(terminalreporter, title, [json.loads(line) for line in path.read_text().splitlines() if line])
