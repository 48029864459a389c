"""A model hub double on 127.0.0.1: a model's metadata as the hub answers it (`GET /api/models/<id>`),
its config.json, and downloads of a model's files the way `huggingface_hub.snapshot_download` asks for
them (the revision's file list, then each file by HEAD and GET), with a fault that stalls a download
part-way, as large hub downloads have been reported to, and one that makes it take its time."""

from __future__ import annotations

import hashlib
import json
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import unquote, urlsplit

CONFIGS = {  # config.json as the hub serves it (/<model>/resolve/main/config.json)
    "Qwen/Qwen3-30B-A3B": {"architectures": ["Qwen3MoeForCausalLM"], "model_type": "qwen3_moe", "num_experts": 128,
                           "tie_word_embeddings": False},
    "Qwen/Qwen3-0.6B": {"architectures": ["Qwen3ForCausalLM"], "model_type": "qwen3"},
    "meta-llama/Llama-3.1-8B": {"architectures": ["LlamaForCausalLM"], "model_type": "llama"},
    "state-spaces/mamba-2.8b-hf": {"architectures": ["MambaForCausalLM"], "model_type": "mamba"},
    "tests/small-moe": {"architectures": ["Qwen3MoeForCausalLM"], "model_type": "qwen3_moe", "num_experts": 4,
                        "tie_word_embeddings": False},
}
MODELS = {
    "Qwen/Qwen3-30B-A3B": {"gated": False, "safetensors": {"parameters": {"BF16": 30_532_122_624}, "total": 30_532_122_624}, "usedStorage": 61_064_245_248},
    "unsloth/Qwen3-30B-A3B-bnb-4bit": {"gated": False, "safetensors": {"parameters": {"BF16": 16_500_000_000}, "total": 16_500_000_000},
                                       "usedStorage": 17_474_000_000},
    "meta-llama/Llama-3.1-8B": {"gated": "manual", "safetensors": {"parameters": {"BF16": 8_030_261_248}, "total": 8_030_261_248}},
    "Qwen/Qwen3-0.6B": {"gated": False, "safetensors": {"parameters": {"BF16": 751_632_384}, "total": 751_632_384}},
    "someone/private-model": None,  # 401 without a token
    "state-spaces/mamba-2.8b-hf": {"gated": False, "safetensors": {"parameters": {"BF16": 2_768_345_600}, "total": 2_768_345_600}},
    # a model whose files really download (a few hundred KB): what the pod's download step fetches in tests
    "tests/small-moe": {"gated": False, "safetensors": {"parameters": {"BF16": 90_000}, "total": 90_000}},
}
COMMIT = "0123456789abcdef0123456789abcdef01234567"


def _files(model: str) -> dict[str, bytes]:
    """The downloadable files of `model` (config.json and one deterministic 'weights' blob)."""
    config = json.dumps(CONFIGS.get(model, {})).encode()
    weights = hashlib.sha256(model.encode()).digest() * 12_000  # 384 KB
    return {"config.json": config, "model.safetensors": weights}


@dataclass
class Faults:
    stall_after: int | None = None  # bytes of a file sent before the connection goes silent (None: no stall)
    stall_for: float = 30.0  # how long it stays silent (longer than any stall limit a test sets)
    trickle_s: float = 0.0  # the weights arrive in 20 pieces over this many seconds (a download that takes time)
    downloads: list[str] = field(default_factory=list)  # "<model>/<file>" for every GET of a file's bytes


class HubDouble:
    def __init__(self) -> None:
        self.requests: list[tuple[str, str | None]] = []
        self.faults = Faults()
        self.served: dict[str, tuple[dict, dict[str, bytes]]] = {}  # model -> (its /api answer, its real files)
        double = self

        def files(model: str) -> dict[str, bytes]:
            return double.served[model][1] if model in double.served else _files(model)

        def known(model: str) -> bool:
            return model in double.served or model in CONFIGS

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_HEAD(self) -> None:  # noqa: N802
                self._route(head=True)

            def do_GET(self) -> None:  # noqa: N802
                self._route(head=False)

            def _route(self, head: bool) -> None:
                double.requests.append((self.path, self.headers.get("Authorization")))
                path = unquote(urlsplit(self.path).path)
                if "/resolve/" in path:
                    model, _, rest = path.removeprefix("/").partition("/resolve/")
                    name = rest.partition("/")[2]
                    return self._file(model, name, head)
                if path.startswith("/api/models/") and "/tree/" in path:
                    model = path.removeprefix("/api/models/").partition("/tree/")[0]
                    return self._tree(model)
                if path.startswith("/api/models/"):
                    model, _, revision = path.removeprefix("/api/models/").partition("/revision/")
                    return self._info(model, bool(revision))
                self._send(404, {"error": "Not found"})

            def _info(self, model: str, with_files: bool) -> None:
                if model not in MODELS and model not in double.served:
                    return self._send(404, {"error": "Repository not found"})
                info = double.served[model][0] if model in double.served else MODELS[model]
                if info is None and not self.headers.get("Authorization"):
                    return self._send(401, {"error": "Invalid credentials"})
                body = {"id": model, "modelId": model, "sha": COMMIT, "private": False, **(info or {"gated": False})}
                if with_files:
                    body["siblings"] = [{"rfilename": name} for name in files(model)]
                self._send(200, body)

            def _tree(self, model: str) -> None:
                if not known(model):
                    return self._send(404, {"error": "Repository not found"})
                entries = [{"type": "file", "path": name, "size": len(data), "oid": hashlib.sha1(data).hexdigest()}
                           for name, data in files(model).items()]
                self._send(200, entries)

            def _file(self, model: str, name: str, head: bool) -> None:
                if not known(model) or name not in files(model):
                    return self._send(404, {"error": "Entry not found"}, extra={"X-Error-Code": "EntryNotFound"})
                data = files(model)[name]
                self.send_response(200)
                self.send_header("Content-Type", "application/octet-stream")
                self.send_header("Content-Length", str(len(data)))
                self.send_header("ETag", f'"{hashlib.sha256(data).hexdigest()}"')
                self.send_header("X-Repo-Commit", COMMIT)
                self.end_headers()
                if head:
                    return
                double.faults.downloads.append(f"{model}/{name}")
                stall = double.faults.stall_after
                if stall is not None and name.endswith(".safetensors"):
                    self.wfile.write(data[:stall])
                    self.wfile.flush()
                    time.sleep(double.faults.stall_for)  # the connection stays open and silent
                    return
                trickle = double.faults.trickle_s if name.endswith(".safetensors") else 0.0
                pieces = 20 if trickle else 1
                try:
                    for at in range(pieces):
                        self.wfile.write(data[len(data) * at // pieces: len(data) * (at + 1) // pieces])
                        self.wfile.flush()
                        if trickle and at < pieces - 1:
                            time.sleep(trickle / pieces)
                except (BrokenPipeError, ConnectionResetError):  # the client was stopped part-way
                    self.close_connection = True

            def _send(self, status: int, body: dict | list, extra: dict | None = None) -> None:
                data = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                for key, value in (extra or {}).items():
                    self.send_header(key, value)
                self.end_headers()
                if self.command != "HEAD":
                    self.wfile.write(data)

            def log_message(self, *args) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"

    def serve(self, model: str, folder: Path, parameters: int) -> None:
        """A real (tiny) model's files under `model`, said to have `parameters` (what the plan sizes)."""
        found = {f.name: f.read_bytes() for f in sorted(folder.iterdir()) if f.is_file()}
        self.served[model] = ({"gated": False, "safetensors": {"parameters": {"BF16": parameters}, "total": parameters},
                               "usedStorage": parameters * 2}, found)

    def __enter__(self) -> "HubDouble":
        threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True).start()
        return self

    def __exit__(self, *exc) -> None:
        self.server.shutdown()
        self.server.server_close()
