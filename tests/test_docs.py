"""The documents keep what others rely on: every RunPod path a document names is one RunPod's OpenAPI
spec has (the vendored copy), and every section a link points at is still there. An editing slip once
cut two sections off docs/scale.md and nothing noticed; now the README's links to them would fail here."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
DOCUMENTS = [REPO / "README.md", *sorted((REPO / "docs").rglob("*.md"))]
SPEC = REPO / "tests" / "doubles" / "runpod-v2-openapi.json"
_PATH = re.compile(r"(?<![\w.])/v2/[A-Za-z0-9_{}\-/]*[A-Za-z0-9_}]")
_LINK = re.compile(r"\]\(([^)\s#]*\.md)?#([^)\s]+)\)")


def slug(heading: str) -> str:
    """A heading's anchor as GitHub makes it: lower case, punctuation gone, spaces to hyphens."""
    text = re.sub(r"[`*_]", "", heading.strip().lower())
    return re.sub(r"[^\w\- ]", "", text).replace(" ", "-")


def anchors(path: Path) -> set[str]:
    fenced, found = False, set()
    for line in path.read_text(encoding="utf-8").splitlines():
        if line.startswith("```"):
            fenced = not fenced
        elif not fenced and re.match(r"#{1,6} ", line):
            found.add(slug(line.lstrip("#")))
    return found


def _matches(path: str, known: list[list[str]]) -> bool:
    parts = path.strip("/").split("/")
    return any(len(spec) == len(parts) and all(s == p or (s.startswith("{") and s.endswith("}"))
                                               for s, p in zip(spec, parts)) for spec in known)


def test_the_slug_is_githubs():
    assert slug("FSDP: decided, not built") == "fsdp-decided-not-built"
    assert slug("Measured on a real GPU, 2026-12-04 (one NVIDIA H200, CUDA 13.0)") == \
        "measured-on-a-real-gpu-2026-12-04-one-nvidia-h200-cuda-130"


@pytest.mark.parametrize("document", DOCUMENTS, ids=[str(d.relative_to(REPO)) for d in DOCUMENTS])
def test_every_runpod_path_a_document_names_is_in_the_openapi_spec(document):
    known = [p.strip("/").split("/") for p in json.loads(SPEC.read_text())["paths"]]
    named = set(_PATH.findall(document.read_text(encoding="utf-8")))
    missing = sorted(p for p in named if not _matches(p, known))
    assert not missing, f"{document.name} names RunPod paths the v2 spec does not have: {missing}"


@pytest.mark.parametrize("document", DOCUMENTS, ids=[str(d.relative_to(REPO)) for d in DOCUMENTS])
def test_every_section_a_link_points_at_is_there(document):
    broken = []
    for target, anchor in _LINK.findall(document.read_text(encoding="utf-8")):
        path = (document.parent / target).resolve() if target else document
        if not path.is_file():
            broken.append(f"{target} (no such document)")
        elif anchor not in anchors(path):
            broken.append(f"{target or document.name}#{anchor}")
    assert not broken, f"{document.name} links to sections that are gone: {broken}"


def test_the_scale_notes_keep_the_sections_the_readme_sends_people_to():
    readme = (REPO / "README.md").read_text(encoding="utf-8")
    for anchor in ("sharding-one-model-over-several-gpus-fsdp2", "several-pods-runpod-instant-clusters"):
        assert f"docs/scale.md#{anchor}" in readme  # the links the test above follows
    assert "/v2/clusters/{id}/pods" in (REPO / "docs" / "scale.md").read_text(encoding="utf-8")
