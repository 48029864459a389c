# shellcheck shell=bash
# Runs on the pod, inside the detached training run: find a Python that has the training stack,
# or build one, and say which. A fresh pod of the official Unsloth template has its Python in the
# image and an empty volume, so a configured venv path may simply not exist.
#
#   setup_python.sh CONFIGURED VENV_DIR INPUT_DIR "CANDIDATE..." [TORCH_INDEX]
#
# Order: the configured interpreter if it has the stack; a venv this script built earlier (on the
# volume, so the second run of the month installs nothing); the image's pythons; else build
# VENV_DIR from INPUT_DIR/requirements-gpu.txt (a GPU is there) or requirements-cpu.txt.
# Prints four lines on stdout: the interpreter, how it was obtained, the seconds it took, and how its
# stack compares with the checked set (requirements-*.txt pins). Progress goes to stderr.
set -u
configured=$1 venv=$2 input_dir=$3 candidates=$4 torch_index=${5:-}
started=$(date +%s)

if command -v nvidia-smi >/dev/null 2>&1 && nvidia-smi >/dev/null 2>&1; then
  modules="torch transformers peft trl datasets unsloth"
  requirements="requirements-gpu.txt"
else
  modules="torch transformers peft trl datasets"
  requirements="requirements-cpu.txt"
fi

# has_stack PYTHON: every module is installed (found, not imported: imports take seconds).
has_stack() {
  [ -x "$1" ] || return 1
  "$1" - "$modules" >/dev/null 2>&1 <<'PY'
import importlib.util, sys
sys.exit(0 if all(importlib.util.find_spec(m) for m in sys.argv[1].split()) else 1)
PY
}

# compare PYTHON REQUIREMENTS: one line, "checked" when every exact pin (name==version) there is what
# PYTHON has, else "differs: name found (checked pin), ..." (the image's own stack, used knowingly).
compare() {
  "$1" - "$2" <<'PY' 2>/dev/null || echo "unknown: could not read the installed versions"
import re, sys
from importlib.metadata import version, PackageNotFoundError
pins = {}
for line in open(sys.argv[1], encoding="utf-8"):
    m = re.match(r"\s*([A-Za-z0-9_.-]+)==([^\s;#]+)", line)
    if m:
        pins[m.group(1).lower()] = m.group(2)
off = []
for name, want in sorted(pins.items()):
    try:
        have = version(name)
    except PackageNotFoundError:
        have = "missing"
    if (have if "+" in want else have.split("+")[0]) != want:  # a pin without a local tag accepts any build
        off.append(f"{name} {have} (checked {want})")
print("differs: " + ", ".join(off) if off else "checked")
PY
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
  stack=$(compare "$1" "$input_dir/$requirements")
  echo "[setup] python $1 ($2) after $(($(date +%s) - started))s: $versions; stack $stack" >&2
  printf '%s\n%s\n%s\n%s\n' "$1" "$2" "$(($(date +%s) - started))" "$stack"
}

if has_stack "$configured"; then
  report "$configured" configured
  exit 0
fi
[ -n "$configured" ] && echo "[setup] $configured is missing or lacks ($modules): looking further" >&2
if has_stack "$venv/bin/python"; then
  report "$venv/bin/python" "venv built earlier"
  exit 0
fi
# An sshd session is no login shell: images that put their venv on PATH through /etc/profile.d
# (the official unsloth image does, for /opt/unsloth-venv) hide it from us unless we ask one.
login_path=$(bash -lc 'printf %s "$PATH"' 2>/dev/null </dev/null) || login_path=''
base=''
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
    if has_stack "$path"; then
      report "$path" "$source"
      exit 0
    fi
  done
done
if [ -z "$base" ]; then
  echo "[setup] no Python at all on the pod (tried: $candidates)" >&2
  exit 1
fi
index=()
if [ "$requirements" = requirements-gpu.txt ]; then
  # torch 2.11 from the default index is the CUDA 13 build (driver 580+); older drivers need the
  # CUDA 12.8 build from PyTorch's own index. Decided before anything is downloaded.
  cuda=$(nvidia-smi 2>/dev/null | sed -n 's/.*CUDA Version: *\([0-9][0-9]*\.[0-9][0-9]*\).*/\1/p' | head -n 1)
  echo "[setup] this host's driver supports CUDA ${cuda:-unknown}" >&2
  if [ -n "$cuda" ] && [ "${cuda%%.*}" -lt 13 ]; then
    if [ -z "$torch_index" ]; then
      echo "[setup] cannot build the stack here: torch 2.11 from the default index is built for CUDA 13 and this" \
        "driver supports CUDA $cuda; set [remote] cuda12_torch_index to PyTorch's CUDA 12.8 wheel index, or rent" \
        "newer hosts ([runpod] min_cuda_version = \"13.0\")" >&2
      exit 1
    fi
    index=(--extra-index-url "$torch_index")
  fi
fi
echo "[setup] no Python with the training stack: building $venv with $base from $requirements" >&2
if "$base" -m venv "$venv" >&2 && "$venv/bin/python" -m pip install --progress-bar off "${index[@]}" -r "$input_dir/$requirements" >&2 \
  && has_stack "$venv/bin/python"; then
  report "$venv/bin/python" "bootstrapped from $requirements"
  exit 0
fi
echo "[setup] could not build a Python with the training stack in $venv" >&2
exit 1
