"""The main job end to end: `modelmix demo` starts the gateway and runs a workload."""

from __future__ import annotations

import io
import os
import shlex
import subprocess
import sys
from pathlib import Path

import pytest
from rich.console import Console
from rich.table import Table

from modelmix.catalog import config_from_dict, default_config
from modelmix.cli._demo import (
    DemoResult,
    _malformed_table,
    _reference,
    _results_table,
    _summary,
    load_prompts,
)
from modelmix.errors import ConfigError
from test_client import needs_local

LONG_ANSWER = ("The answer is B because the derivative of x squared is two x, which at "
               "x equals three gives six, so the slope there is six.\nSecond line.")


def _render(table: Table, width: int = 160) -> list[str]:
    console = Console(width=width, record=True, file=io.StringIO())
    console.print(table)
    return console.export_text().splitlines()


def _result(i: int, **kw: object) -> DemoResult:
    base: dict[str, object] = {"index": i, "source": "mmlu", "stream": i % 2 == 0,
                               "status": 200, "deployment": "smollm2-local",
                               "reason": "rules: open model by default", "prompt_tokens": 50,
                               "completion_tokens": 8, "latency_ms": 120.0 + i,
                               "answer": LONG_ANSWER}
    base.update(kw)
    return DemoResult(**base)  # type: ignore[arg-type]


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
    assert "malformed -> 4xx" in out and "7 / 7" in out
    assert "413" in out and "404" in out and "image that is not one" in out
    assert "same tokens all on gpt-4.1" in out
    assert "Systems of models" in out
    for system in ("healthcare-triage", "finance-analyst", "manufacturing-maintenance",
                   "document-intake"):
        assert system in out
    assert "local:smollm2-local" in out and "phi: regulated" in out
    db_url = f"sqlite:///{tmp_path / 'u.db'}"
    assert f"modelmix usage --db {shlex.quote(db_url)}" in out
    usage = subprocess.run([sys.executable, "-m", "modelmix", "usage", "--db", db_url],
                           cwd=tmp_path, env=env, capture_output=True, text=True, timeout=60)
    assert usage.returncode == 0 and "smollm2-local" in usage.stdout, usage.stderr


@needs_local
def test_demo_without_a_proprietary_deployment(tmp_path: Path) -> None:
    (tmp_path / "open.yaml").write_text(
        "deployments:\n  - name: smollm2-local\n    provider: local\n"
        "    model: SmolLM2-135M-Instruct\n    context_window: 4096\n")
    env = {k: v for k, v in os.environ.items() if k != "MODELMIX_DB_URL"}
    proc = subprocess.run(
        [sys.executable, "-m", "modelmix", "demo", "--config", "open.yaml", "--n", "2",
         "--max-tokens", "4"],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=180,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "no proprietary deployment in the catalog to compare with" in proc.stdout
    assert "this catalog has no blueprints" in proc.stdout
    assert "modelmix usage --db sqlite:///.modelmix/demo_usage.db" in proc.stdout
    assert (tmp_path / ".modelmix" / "demo_usage.db").exists()


def test_reference_deployment() -> None:
    cfg = default_config()
    assert _reference(cfg, None) is cfg.deployment("gpt-4.1")
    assert _reference(cfg, "claude-sonnet-4-5") is cfg.deployment("claude-sonnet-4-5")
    with pytest.raises(ConfigError, match=r"valid names: smollm2-local, gpt-4\.1"):
        _reference(cfg, "nope")
    only_open = config_from_dict({"deployments": [
        {"name": "v", "provider": "vllm", "base_url": "http://127.0.0.1:9/v1", "model": "m"}]})
    assert _reference(only_open, None) is None


def test_summary_without_reference_or_successes() -> None:
    failed = [_result(i, status=0, error="APIConnectionError: refused", answer="")
              for i in range(1, 4)]
    text = "\n".join(_render(_summary(failed, None, [], 1.0)))
    (latency,) = [line for line in text.splitlines() if "latency p50 / p95" in line]
    assert latency.split("│")[2].strip() == "- / -"
    assert "0 ms" not in text
    assert "no proprietary deployment in the catalog to compare with" in text
    ok = "\n".join(_render(_summary([_result(1), _result(2)], default_config().deployment(
        "gpt-4.1"), [], 1.0)))
    assert "same tokens all on gpt-4.1" in ok and "ms / " in ok


def test_results_table_keeps_one_line_per_request() -> None:
    lines = _render(_results_table([_result(i) for i in range(1, 61)]))
    rows = [line for line in lines if "smollm2-local" in line]
    assert len(rows) == 60
    assert len(lines) <= 60 + 6  # title, rules, header
    assert "rules: open model by default" in rows[0]  # the usual reason is not cut
    assert "The answer is B because the derivative …" in rows[0]
    assert "…" not in next(line for line in lines if "route reason" in line)  # headers
    assert max(len(line.rstrip()) for line in lines) <= 160


def test_malformed_table_cuts_messages_at_a_word_boundary() -> None:
    words = ", ".join(f"deployment-{i}" for i in range(30))
    message = f"The model 'gpt-9' does not exist; known models: {words}"
    lines = _render(_malformed_table([("unknown model", 404, message)]), width=160)
    text = " ".join(line.strip("│ ") for line in lines)
    assert "The model 'gpt-9' does not exist; known models:" in text
    body = [line for line in lines if "unknown model" in line]
    assert len(body) == 1 and body[0].rstrip(" │").endswith("…")
    shown = body[0].split("│")[3].strip().removesuffix("…").strip()
    assert message.startswith(shown) and message[len(shown)] in ", "


def test_learned_route_reason_shows_score_and_threshold_first() -> None:
    from modelmix.cli._demo import _short_reason

    full = ("learned: p(strong needed)=0.55 < 0.58 (target balanced); no strong-model deployment "
            "allowed (gpt-4.1: OPENAI_API_KEY unset)")
    assert _short_reason(full) == ("p(strong)=0.55<0.58 balanced; no strong-model deployment "
                                   "allowed (gpt-4.1: OPENAI_API_KEY unset)")
    assert _short_reason("rules: open model by default") == "rules: open model by default"


def test_systems_table_shows_steps_decisions_and_costs() -> None:
    from modelmix.cli._demo import _shorten
    from modelmix.cli._demo_systems import SystemResult, systems_table

    ok = SystemResult("finance-analyst", "card pseudonymised", steps="difficulty:-,checked:a",
                      reason="system finance-analyst: difficulty: easy; checked: tier 0 (a) "
                             "accepted", prompt_tokens=1000, completion_tokens=100,
                      answer="The total is $59.97")
    failed = SystemResult("healthcare-triage", "x", status=503, error="no deployment")
    lines = "\n".join(_render(systems_table([ok, failed], default_config().deployment(
        "gpt-4.1"), _shorten)))
    assert "difficulty:-, checked:a" in lines and "difficulty: easy; checked: tier 0" in lines
    assert "0.002800" in lines  # 1,000 in x $2 + 100 out x $8 per 1M tokens
    assert "503: no deployment" in lines
