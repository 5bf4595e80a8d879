# Shared set-up for scripts/demo.sh and scripts/test.sh: Debian packages (only those missing) and the venv.
# Usage: source scripts/_setup.sh; need_apt PKG...; make_venv EXTRAS
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="${CODECAPSULE_VENV:-$ROOT/.venv}"
PY="${PYTHON:-python3}"

_apt_updated=0
need_apt() {
    # need_apt "command:package" ... — install the package when the command (or the dpkg package) is missing
    local missing=() item cmd pkg
    for item in "$@"; do
        cmd="${item%%:*}"; pkg="${item#*:}"
        if [[ "$cmd" == dpkg=* ]]; then
            dpkg -s "${cmd#dpkg=}" >/dev/null 2>&1 || missing+=("$pkg")
        else
            command -v "$cmd" >/dev/null 2>&1 || missing+=("$pkg")
        fi
    done
    ((${#missing[@]})) || return 0
    local sudo=""
    if [[ $(id -u) -ne 0 ]]; then sudo="sudo"; fi
    echo "==> apt-get install ${missing[*]}"
    if [[ $_apt_updated -eq 0 ]]; then $sudo apt-get update -qq; _apt_updated=1; fi
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "${missing[@]}" >/dev/null
}

make_venv() {
    local extras="$1"
    if [[ ! -x "$VENV/bin/python" ]]; then
        echo "==> creating $VENV"
        "$PY" -m venv "$VENV"
        "$VENV/bin/python" -m pip install -q -U pip
    fi
    echo "==> pip install -e .[$extras]"
    "$VENV/bin/python" -m pip install -q -e "$ROOT[$extras]"
}

# The toolchains the local engine runs, and bubblewrap for its sandbox.
need_toolchains() {
    need_apt bwrap:bubblewrap prlimit:util-linux setpriv:util-linux dpkg=libseccomp2:libseccomp2 gcc:gcc g++:g++ javac:default-jdk-headless node:nodejs
}

# The JupyterLab extension that highlights %%capsule cells: built from labextension/ into codecapsule/labextension/
# (the wheel ships it, see hatch_build.py). Run before make_venv so the install picks it up.
build_labextension() {
    need_apt node:nodejs npm:npm
    echo "==> npm ci && npm run build (labextension/)"
    (cd "$ROOT/labextension" && npm ci --no-audit --no-fund --loglevel=error && npm run --silent build >/dev/null)
}
