#!/usr/bin/env bash
# Install everything the tests need (Debian packages, a venv with the dev extras) and run the whole suite:
# ruff, mypy, the strict docs build, then pytest (unit, engines, Piston, cluster fakes, notebooks, browser).
source "$(dirname "${BASH_SOURCE[0]}")/_setup.sh"
need_toolchains
need_apt cloud-init:cloud-init chromium:chromium
build_labextension
make_venv dev
cd "$ROOT"
export PATH="$VENV/bin:$PATH"
echo "==> ruff"; ruff check codecapsule tests bench
echo "==> mypy"; mypy
echo "==> mkdocs build --strict"; NO_MKDOCS_2_WARNING=1 mkdocs build --strict --quiet --site-dir "$(mktemp -d)"
echo "==> pytest"
set +e
pytest -q -p no:cacheprovider "$@"
rc=$?
set -e
if [[ $rc -eq 5 ]]; then echo "pytest collected no tests: failing on purpose" >&2; exit 1; fi
exit $rc
