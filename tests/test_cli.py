"""The command line: option bounds, clean `error:` lines instead of tracebacks, help text."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import Result
from typer.testing import CliRunner

from modelmix.cli import app
from modelmix.cli._app import _check_port as _REAL_CHECK
from test_client import needs_local

DEPLOYMENT = ("deployments:\n  - name: v\n    provider: vllm\n"
              "    base_url: http://127.0.0.1:9/v1\n    model: m\n")


@pytest.fixture()
def runner(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> CliRunner:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("COLUMNS", "200")
    for var in ("MODELMIX_DB_URL", "MODELMIX_CONFIG", "MODELMIX_MASTER_KEY"):
        monkeypatch.delenv(var, raising=False)

    def no_server(*args: object, **kwargs: object) -> None:
        raise AssertionError("serve got as far as starting the server")

    monkeypatch.setattr("uvicorn.run", no_server)
    # port 4000 may be busy
    monkeypatch.setattr("modelmix.cli._app._check_port", lambda host, port: None)
    return CliRunner()


def _clean_error(result: Result, code: int = 2) -> str:
    """The output of a command that failed with ``code`` and no traceback."""
    assert result.exit_code == code, result.output
    assert result.exception is None or isinstance(result.exception, SystemExit), result.output
    assert "Traceback" not in result.output
    return result.output


@pytest.mark.parametrize(("store", "env"), [
    ("store:\n  url: mysql://user@db/modelmix\n", {}),
    ("store:\n  url: nosuchdialect://x\n", {}),
    ("store:\n  enabled: false\n", {"MODELMIX_DB_URL": "mysql://user@db/modelmix"}),
])
def test_serve_reports_store_errors_cleanly(runner: CliRunner, tmp_path: Path, store: str,
                                            env: dict[str, str]) -> None:
    path = tmp_path / "cat.yaml"
    path.write_text(DEPLOYMENT + store)
    result = runner.invoke(app, ["serve", "--config", str(path)], env=env)
    output = _clean_error(result)
    assert output.startswith("error: ") and "://" in output


def test_keys_commands_report_store_errors_cleanly(runner: CliRunner) -> None:
    env = {"MODELMIX_DB_URL": "mysql://user@db/modelmix"}
    for args in (["keys", "list"], ["keys", "create"], ["keys", "revoke", "x"]):
        output = _clean_error(runner.invoke(app, args, env=env))
        assert output.startswith("error: ") and "mysql" in output


@pytest.mark.parametrize("args", [
    ["--port", "80001"], ["--port", "0"], ["--port", "-1"], ["--port", "65536"],
    ["--host", ""], ["--host", "  "],
])
def test_serve_bounds_port_and_host(runner: CliRunner, args: list[str]) -> None:
    output = _clean_error(runner.invoke(app, ["serve", *args]))
    assert "Invalid value" in output


@pytest.mark.parametrize("args", [
    ["--n", "0"], ["--n", "-1"], ["--max-tokens", "0"], ["--max-tokens", "-3"],
])
def test_demo_rejects_non_positive_counts(runner: CliRunner, args: list[str]) -> None:
    output = _clean_error(runner.invoke(app, ["demo", *args]))
    assert "Invalid value" in output


def test_demo_unknown_compare_to_lists_valid_names(runner: CliRunner, tmp_path: Path) -> None:
    output = _clean_error(runner.invoke(app, ["demo", "--compare-to", "nope"]))
    assert output.startswith("error: --compare-to 'nope' is not a deployment")
    assert "smollm2-local" in output and "gpt-4.1" in output
    assert not (tmp_path / ".modelmix").exists()  # refused before starting anything


@pytest.mark.parametrize(("content", "needle"), [
    (b"deployments:\n  - name: caf\xe9\n", "not valid UTF-8"),
    (b"a: " + b"[" * 5000 + b"]" * 5000, "nested too deeply"),
    (b"deployments: [unclosed\n", 'in "cat.yaml", line 1'),
    (b"deployments:\n  v: {}\n", 'field "deployments": Input should be a list'),
])
def test_bad_config_files_are_one_clean_error(runner: CliRunner, content: bytes,
                                              needle: str) -> None:
    Path("cat.yaml").write_bytes(content)
    output = _clean_error(runner.invoke(app, ["models", "--config", "cat.yaml"]))
    assert output.startswith("error: ") and "cat.yaml" in output and needle in output
    assert "<unicode string>" not in output


@pytest.mark.parametrize("command", [
    [], ["serve"], ["models"], ["chat"], ["demo"], ["usage"], ["keys"], ["keys", "create"],
    ["keys", "list"], ["keys", "revoke"],
])
def test_help_is_plain_text(runner: CliRunner, command: list[str]) -> None:
    result = runner.invoke(app, [*command, "--help"])
    assert result.exit_code == 0, result.output
    assert "`" not in result.output


def test_serve_policy_option_sets_the_guard(runner: CliRunner, tmp_path: Path,
                                            monkeypatch: pytest.MonkeyPatch) -> None:
    from modelmix.guard import POLICY_ENV

    monkeypatch.setenv(POLICY_ENV, "finance")  # the option outranks the environment
    started: list[object] = []
    monkeypatch.setattr("uvicorn.run", lambda application, **kw: started.append(application))
    path = tmp_path / "cat.yaml"
    path.write_text(DEPLOYMENT + "store:\n  enabled: false\n")
    result = runner.invoke(app, ["serve", "--config", str(path), "--policy", "healthcare"])
    assert result.exit_code == 0, result.output
    guard = started[0].state.gateway.service.guard  # type: ignore[attr-defined]
    assert guard is not None and guard.policy.name == "healthcare"


@pytest.mark.parametrize(("policy", "needle"), [
    ("no-such-policy", "no-such-policy"), ("  ", "must not be empty"),
])
def test_serve_rejects_a_bad_policy_cleanly(runner: CliRunner, monkeypatch: pytest.MonkeyPatch,
                                            policy: str, needle: str) -> None:
    from modelmix.guard import POLICY_ENV

    monkeypatch.delenv(POLICY_ENV, raising=False)
    output = _clean_error(runner.invoke(app, ["serve", "--policy", policy]))
    assert needle in output


def test_input_errors_say_what_is_wrong(runner: CliRunner, tmp_path: Path) -> None:
    null_prompt = tmp_path / "n.jsonl"
    null_prompt.write_text('{"prompt": null}\n')
    tiny = tmp_path / "tiny.csv"
    tiny.write_text("prompt,weak,strong\na,True,True\nb,False,True\nc,True,False\n")
    not_a_db = tmp_path / "x.csv"
    not_a_db.write_text("a,b\n")
    cases = [
        (["router", "score", "--input", str(tmp_path)], "is a directory"),
        (["router", "score", "--input", str(null_prompt)], "'prompt' is empty"),
        (["guard", "scan", "--input", str(tmp_path)], "is a directory"),
        (["router", "eval", "--data", str(tiny), "--out", str(not_a_db)], "not a directory"),
        (["router", "eval", "--data", str(tiny), "--out", str(tmp_path / "ev"), "--folds", "5"],
         "folds must be between 2 and the number of distinct prompts (3)"),
        (["audit", "--class", "nope"], "expected one of public"),
        (["audit", "--db", ""], "empty database URL"),
        (["audit", "--db", str(tmp_path / "none.db")], "no usage database at"),
        (["router", "calibrate", "--data", str(tiny), "--target", "strong-share=0.3",
          "--name", " "], "must not be empty"),
        (["router", "calibrate", "--data", str(tiny), "--target", "strong-share=0.3",
          "--name", "x", "--out", str(not_a_db)], "is not a directory"),
    ]
    for args, needle in cases:
        output = _clean_error(runner.invoke(app, args))
        assert needle in output, (args, output)
    output = _clean_error(runner.invoke(app, ["audit", "--db", f"sqlite:///{not_a_db}"]), 1)
    assert "file is not a database" in output and "sqlalche.me" not in output


def test_guard_scan_accepts_a_byte_order_mark(runner: CliRunner, tmp_path: Path) -> None:
    path = tmp_path / "bom.jsonl"
    path.write_bytes(b'\xef\xbb\xbf{"text": "mail a@example.com"}\n')
    result = runner.invoke(app, ["guard", "scan", "--input", str(path)])
    assert result.exit_code == 0, result.output
    assert '"EMAIL_ADDRESS", "start": 5' in result.output


def test_a_database_path_is_a_sqlite_url(runner: CliRunner, tmp_path: Path) -> None:
    from modelmix.store import UsageRecord, UsageStore

    path = tmp_path / "usage.db"
    with UsageStore(f"sqlite:///{path}") as store:
        store.create_all()
        store.insert_many([UsageRecord(request_id="r1", created_at=1.0, deployment="dep-a")])
    result = runner.invoke(app, ["usage", "--db", str(path), "--json"])
    assert result.exit_code == 0, result.output
    assert "dep-a" in result.output



def test_serve_reports_a_busy_port_in_one_line(runner: CliRunner,
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    import socket

    monkeypatch.setattr("modelmix.cli._app._check_port", _REAL_CHECK)  # the fixture stubs it

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        output = _clean_error(runner.invoke(app, ["serve", "--port", str(port)]))
    assert output.startswith("error: cannot listen on 127.0.0.1:") and "--port" in output


def test_chat_applies_the_policy_the_gateway_would(runner: CliRunner, tmp_path: Path,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    """Found by attack: after the library stopped reading $MODELMIX_POLICY, `modelmix chat`
    sent a PHI prompt to a cloud deployment that `serve` would have refused."""
    path = tmp_path / "cloud.yaml"
    path.write_text("deployments:\n  - name: cl\n    provider: openai-compatible\n"
                    "    base_url: http://127.0.0.1:9/v1\n    model: m\n    hosting: cloud\n"
                    "    tier: proprietary\n")
    monkeypatch.setenv("MODELMIX_POLICY", "healthcare")
    result = runner.invoke(app, ["chat", "-c", str(path), "-m", "cl",
                                 "Patient SSN 123-45-6789 has diabetes"])
    output = _clean_error(result, code=1)
    assert "policy" in output and "healthcare" in output and "123-45-6789" not in output


def test_chat_with_a_bad_policy_is_an_input_error(runner: CliRunner, tmp_path: Path) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text(DEPLOYMENT + "policy: no-such-policy\n")
    assert "no-such-policy" in _clean_error(runner.invoke(app, ["chat", "-c", str(path), "hi"]))


@needs_local
def test_chat_says_on_stderr_how_a_system_answered(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items()
           if k not in ("OPENAI_API_KEY", "ANTHROPIC_API_KEY", "GEMINI_API_KEY",
                        "NVIDIA_API_KEY", "MODELMIX_CONFIG")}
    proc = subprocess.run(
        [sys.executable, "-m", "modelmix", "chat", "-m", "system/finance-analyst",
         "--max-tokens", "24", "What is 15% of 240?"],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=180)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() and "route:" not in proc.stdout  # stdout: the answer alone
    assert "route: difficulty:-, " in proc.stderr and "smollm2-local" in proc.stderr
    assert "system finance-analyst: difficulty:" in proc.stderr


def test_a_bad_log_level_is_one_error_line(runner: CliRunner) -> None:
    output = _clean_error(runner.invoke(app, ["serve", "--log-level", "loud"]))
    assert output.strip().count("\n") == 0
    assert output.startswith("error: --log-level 'loud': expected one of") and "debug" in output


def test_log_levels_are_read_in_any_case_and_trace_works(runner: CliRunner) -> None:
    for level in ("TRACE", "Debug", "warning"):
        result = runner.invoke(app, ["serve", "--log-level", level])
        # the stubbed uvicorn.run raises once everything before it accepted the level
        assert "serve got as far as starting the server" in str(result.exception), result.output


def test_table_cells_keep_square_brackets(runner: CliRunner, tmp_path: Path) -> None:
    """Found on the way (issue 14): rich read `[local]` in "pip install
    'modelmix[local]'" as markup and printed `pip install 'modelmix'`."""
    from rich.console import Console

    from modelmix.cli._demo import DemoResult, _malformed_table, _results_table

    console = Console(record=True, width=300)
    res = DemoResult(index=1, source="mmlu", stream=False, status=503)
    res.error = "pip install 'modelmix[local]'"
    console.print(_results_table([res]))
    console.print(_malformed_table([("[bold]x[/bold]", 400, "bad [red]field[/red]")]))
    text = console.export_text()
    assert "modelmix[local]" in text and "[bold]x[/bold]" in text and "[red]field[/red]" in text
    path = tmp_path / "brackets.yaml"
    path.write_text("deployments:\n  - name: v\n    provider: vllm\n"
                    "    base_url: http://127.0.0.1:9/v1\n    model: org/m[q4]\n")
    assert "org/m[q4]" in runner.invoke(app, ["models", "-c", str(path)]).output


def test_chat_reads_the_prompt_from_stdin_and_names_the_deployment(
        runner: CliRunner, tmp_path: Path) -> None:
    from faulty_upstream import FaultyUpstream

    with FaultyUpstream("piped") as up:
        path = tmp_path / "one.yaml"
        path.write_text(f"deployments:\n  - name: up\n    provider: vllm\n"
                        f"    base_url: {up.url}\n    model: m\n")
        result = runner.invoke(app, ["chat", "-c", str(path), "-m", "up", "--no-stream", "-"],
                               input="What is in the pipe?\n")
        assert result.exit_code == 0, result.output
        sent = up.received[-1].body["messages"]
    assert sent == [{"role": "user", "content": "What is in the pipe?"}]
    assert "hello from piped" in result.stdout
    assert "route: up: " in result.stderr
    empty = runner.invoke(app, ["chat", "-c", str(path), "-m", "up", "-"], input="")
    assert "standard input is empty" in _clean_error(empty)
