"""The main job end to end: `modelmix demo` starts the gateway and runs a workload."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from modelmix.demo import load_prompts
from test_client import needs_local


def test_bundled_prompts_mix_mmlu_and_gsm8k() -> None:
    rows = load_prompts(60)
    assert len(rows) == 60
    assert {r["source"] for r in rows} == {"mmlu", "gsm8k"}


@needs_local
def test_demo_runs_workload_through_gateway(tmp_path: Path) -> None:
    env = {**os.environ, "MODELMIX_DB_URL": f"sqlite:///{tmp_path / 'u.db'}"}
    for var in ("OPENAI_API_KEY", "ANTHROPIC_API_KEY", "GEMINI_API_KEY", "NVIDIA_API_KEY"):
        env.pop(var, None)
    proc = subprocess.run(
        [sys.executable, "-m", "modelmix", "demo", "--n", "4", "--max-tokens", "8"],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=180,
    )
    out = proc.stdout
    assert proc.returncode == 0, out + proc.stderr
    assert "smollm2-local: 4" in out
    assert "malformed -> 4xx" in out and "6 / 6" in out
    assert "413" in out and "404" in out
    assert "same tokens all on gpt-4.1" in out
