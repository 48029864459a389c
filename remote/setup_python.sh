# shellcheck shell=bash
# Runs on the pod, inside the detached training run: find a Python whose training stack is the one
# the trainer was checked against, or build it, and say which and why. A fresh pod of the official
# Unsloth template has its Python in the image and an empty volume, so a venv path may not exist.
#
#   setup_python.sh CONFIGURED VENV_DIR INPUT_DIR "CANDIDATE..." [TORCH_INDEX]
#
# Order: the configured interpreter; a venv this script built earlier (on the volume, so a later run
# installs nothing); the image's pythons (also on a login shell's PATH). Each is used only when it has
# the stack AND its versions fall in the checked ranges (INPUT_DIR/ranges-gpu.txt on a GPU,
# requirements-cpu.txt without one): an image's newer Unsloth is not the stack that was reviewed.
# Else VENV_DIR is built from requirements-gpu.txt, torch, torchvision and xformers all from one CUDA
# index (TORCH_INDEX, PyTorch's CUDA 12.8 one), or from requirements-cpu.txt without a GPU.
# Prints four lines on stdout: the interpreter, how it was obtained, the seconds it took, and how its
# stack compares with the checked ranges (and why another was not used). Progress goes to stderr.
set -u
configured=$1 venv=$2 input_dir=$3 candidates=$4 torch_index=${5:-}
started=$(date +%s)
passed_over=''

if command -v nvidia-smi >/dev/null 2>&1 && nvidia-smi >/dev/null 2>&1; then
  modules="torch transformers peft trl datasets unsloth"
  requirements="requirements-gpu.txt" ranges="ranges-gpu.txt"
else
  modules="torch transformers peft trl datasets"
  requirements="requirements-cpu.txt" ranges="requirements-cpu.txt"
fi

# has_stack PYTHON: every module is installed (found, not imported: imports take seconds).
has_stack() {
  [ -x "$1" ] || return 1
  "$1" - "$modules" >/dev/null 2>&1 <<'PY'
import importlib.util, sys
sys.exit(0 if all(importlib.util.find_spec(m) for m in sys.argv[1].split()) else 1)
PY
}

# compare PYTHON RANGES: one line, "in range" when every requirement there (name and version range)
# holds for what PYTHON has, else "out of range: name found (wanted range), ..."; exit 0 only in range.
compare() {
  local rc
  "$1" - "$2" <<'PY' 2>/dev/null
import re, sys
from importlib.metadata import version, PackageNotFoundError
from packaging.requirements import Requirement
from packaging.version import Version
off = []
for line in open(sys.argv[1], encoding="utf-8"):
    line = line.split("#", 1)[0].strip()
    if not re.match(r"[A-Za-z0-9_.-]+\s*[=<>!~]", line):
        continue
    req = Requirement(line)
    try:
        have = version(req.name)
    except PackageNotFoundError:
        off.append(f"{req.name} missing ({req.specifier})")
        continue
    if not req.specifier.contains(Version(have).base_version if "+" not in str(req.specifier) else have, prereleases=True):
        off.append(f"{req.name} {have} (wanted {req.specifier})")
print("out of range: " + ", ".join(off) if off else "in range")
sys.exit(1 if off else 0)
PY
  rc=$?
  [ $rc -le 1 ] || echo "unknown: could not read the installed versions"
  return $rc
}

report() {
  local versions stack
  versions=$("$1" - <<'PY' 2>/dev/null
import sys
from importlib.metadata import version, PackageNotFoundError
found = []
for name in ("torch", "transformers", "peft", "trl", "unsloth"):
    try:
        found.append(f"{name} {version(name)}")
    except PackageNotFoundError:
        pass
print(f"Python {sys.version.split()[0]}, " + ", ".join(found))
PY
)
  stack=$(compare "$1" "$input_dir/$ranges")
  [ -n "$passed_over" ] && stack="$stack; not used:$passed_over"
  echo "[setup] python $1 ($2) after $(($(date +%s) - started))s: $versions; stack $stack" >&2
  printf '%s\n%s\n%s\n%s\n' "$1" "$2" "$(($(date +%s) - started))" "$stack"
}

# usable PYTHON HOW: has the stack and it is in range; else remembers why it was passed over.
usable() {
  has_stack "$1" || return 1
  local said
  if said=$(compare "$1" "$input_dir/$ranges"); then
    return 0
  fi
  echo "[setup] $1 ($2) has the stack but not the checked versions: $said" >&2
  passed_over="$passed_over $1 ($said)"
  return 1
}

if usable "$configured" configured; then
  report "$configured" configured
  exit 0
fi
[ -n "$configured" ] && ! has_stack "$configured" && echo "[setup] $configured is missing or lacks ($modules): looking further" >&2
if usable "$venv/bin/python" "venv built earlier"; then
  report "$venv/bin/python" "venv built earlier"
  exit 0
fi
# An sshd session is no login shell: images that put their venv on PATH through /etc/profile.d
# (the official unsloth image does, for /opt/unsloth-venv) hide it from us unless we ask one.
login_path=$(bash -lc 'printf %s "$PATH"' 2>/dev/null </dev/null) || login_path=''
base=''
[ -x "$configured" ] && base=$configured  # a Python out of range still builds the venv
for candidate in $candidates; do
  for how in here login; do
    if [ $how = here ]; then
      path=$(command -v "$candidate" 2>/dev/null) || continue
      source="found in the image"
    else
      case $candidate in */*) continue ;; esac
      [ -n "$login_path" ] || continue
      path=$(PATH=$login_path command -v "$candidate" 2>/dev/null) || continue
      source="found on a login shell's PATH"
    fi
    [ -n "$base" ] || base=$path
    if usable "$path" "$source"; then
      report "$path" "$source"
      exit 0
    fi
  done
done
if [ -z "$base" ]; then
  echo "[setup] no Python at all on the pod (tried: $candidates)" >&2
  exit 1
fi
torch_step=()
if [ "$requirements" = requirements-gpu.txt ]; then
  # One CUDA index for torch, torchvision and xformers, decided before anything is downloaded: torch
  # from the default index is the CUDA 13 build, and an xformers built for another CUDA does not load.
  cuda=$(nvidia-smi 2>/dev/null | sed -n 's/.*CUDA Version: *\([0-9][0-9]*\.[0-9][0-9]*\).*/\1/p' | head -n 1)
  echo "[setup] this host's driver supports CUDA ${cuda:-unknown}" >&2
  if [ -z "$torch_index" ]; then
    echo "[setup] cannot build the stack here: torch, torchvision and xformers must come from one CUDA index;" \
      "set [remote] torch_index to PyTorch's CUDA 12.8 wheel index (…/whl/cu128), or use an image whose stack is" \
      "in the checked ranges (ranges-gpu.txt)${passed_over:+; passed over:$passed_over}" >&2
    exit 1
  fi
  if [ -n "$cuda" ] && { [ "${cuda%%.*}" -lt 12 ] || { [ "${cuda%%.*}" -eq 12 ] && [ "${cuda#*.}" -lt 8 ]; }; }; then
    echo "[setup] this driver supports CUDA $cuda; the stack is built for CUDA 12.8: rent newer hosts" \
      "([runpod] min_cuda_version = \"12.8\")" >&2
    exit 1
  fi
  mapfile -t torch_step < <(grep -E '^(torch|torchvision|xformers)==' "$input_dir/$requirements")
fi
echo "[setup] no Python with the checked stack: building $venv with $base from $requirements" >&2
# --no-compile: pip would byte-compile every module of torch and its CUDA stack, billed, most never imported;
# Python compiles what the trainer imports, once, and keeps it beside the venv (on the volume when there is one).
if "$base" -m venv "$venv" >&2 \
  && { [ ${#torch_step[@]} -eq 0 ] || "$venv/bin/python" -m pip install --progress-bar off --no-compile --index-url "$torch_index" \
    "${torch_step[@]}" >&2; } \
  && "$venv/bin/python" -m pip install --progress-bar off --no-compile -r "$input_dir/$requirements" >&2 \
  && has_stack "$venv/bin/python"; then
  report "$venv/bin/python" "bootstrapped from $requirements"
  exit 0
fi
echo "[setup] could not build a Python with the training stack in $venv" >&2
exit 1
