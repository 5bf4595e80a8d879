#!/usr/bin/env bash
# Install CodeCapsule with the local engine's toolchains, then run one Python, JavaScript, Java, C, C++ and SQL
# example on the local engine and print each result.
source "$(dirname "${BASH_SOURCE[0]}")/_setup.sh"
need_toolchains
build_labextension
make_venv notebook
echo "==> codecapsule demo"
CODECAPSULE_PISTON_URL= "$VENV/bin/codecapsule" demo --engine local
