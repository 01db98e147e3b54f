# syntax=docker/dockerfile:1
# The modelmix gateway image (docs/deploy.md).
#
#   docker build -t modelmix:local .
#   docker run --rm -p 4000:4000 -e MODELMIX_MASTER_KEY=sk-... modelmix:local
#
# The builder runs scripts/install.sh itself, the install `make test` and CI run, so the
# image cannot drift from the tested one (tests/test_deploy_files.py checks this file).
# The same image serves the embedded SmolLM2 model over OpenAI's API
# (`python -m llama_cpp.server --model /opt/models/smollm2.gguf`, see deploy/compose.yaml).

ARG PYTHON_IMAGE=python:3.11-slim-bookworm

FROM ${PYTHON_IMAGE} AS builder
ARG TARGETARCH
# A C/C++ toolchain and CMake for the llama-cpp-python source build.
RUN apt-get update \
    && apt-get install -y --no-install-recommends build-essential cmake \
    && rm -rf /var/lib/apt/lists/*
WORKDIR /opt/modelmix
COPY pyproject.toml README.md ./
COPY scripts/install.sh scripts/install.sh
COPY src src
# Cache mounts keep pip's downloads and the llama-cpp-python wheel between builds (one
# wheel cache per architecture: install.sh takes any cached wheel of its version).
RUN --mount=type=cache,target=/root/.cache/pip \
    --mount=type=cache,id=modelmix-wheels-${TARGETARCH},target=/root/.cache/modelmix/wheels \
    VENV=/opt/venv PYTHON=python3 bash scripts/install.sh \
    && /opt/venv/bin/python -m compileall -q /opt/modelmix/src

FROM ${PYTHON_IMAGE} AS runtime
# Shared libraries the installed wheels link against that the slim image lacks:
# libgomp1 (llama.cpp's OpenMP), libgl1 libglib2.0-0 libsm6 libxext6 (OpenCV, for OCR).
RUN apt-get update \
    && apt-get install -y --no-install-recommends libgomp1 libgl1 libglib2.0-0 libsm6 libxext6 \
    && rm -rf /var/lib/apt/lists/*
RUN groupadd --system --gid 10001 modelmix \
    && useradd --system --uid 10001 --gid modelmix --home-dir /var/lib/modelmix \
       --create-home --shell /usr/sbin/nologin modelmix
# The venv holds an editable install of /opt/modelmix: both keep their builder paths.
COPY --from=builder /opt/venv /opt/venv
COPY --from=builder /opt/modelmix /opt/modelmix
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1
# A stable path for the bundled GGUF model (the llama.cpp server service uses it), and a
# smoke test that the gateway imports in this stage.
RUN mkdir -p /opt/models \
    && ln -s "$(python -c 'from modelmix.providers.local import default_model_path as p; print(p())')" \
       /opt/models/smollm2.gguf \
    && test -f /opt/models/smollm2.gguf \
    && modelmix --version
# The working directory holds what the gateway writes: the SQLite store when no
# MODELMIX_DB_URL is set, and the spill file of usage rows the database refused.
WORKDIR /var/lib/modelmix
USER 10001:10001
EXPOSE 4000
HEALTHCHECK --interval=10s --timeout=3s --start-period=60s --retries=3 \
    CMD ["python", "-c", "import sys, urllib.request; sys.exit(urllib.request.urlopen('http://127.0.0.1:4000/ready', timeout=2).status != 200)"]
ENTRYPOINT ["modelmix", "serve", "--host", "0.0.0.0"]
CMD ["--port", "4000"]
