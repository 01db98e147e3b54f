"""The suite never reads the user's set-up (tests/conftest.py): a store with virtual keys
in the checkout, MODELMIX_* variables or provider keys in the shell."""

from __future__ import annotations

import os
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


def test_the_session_runs_outside_the_checkout() -> None:
    # the default store (sqlite:///modelmix_usage.db) is relative to the working directory
    assert not Path.cwd().resolve().is_relative_to(REPO)


def test_no_user_settings_reach_the_tests() -> None:
    leaked = [n for n in os.environ if n.startswith("MODELMIX_")
              and n not in ("MODELMIX_TEST_PG_URL", "MODELMIX_SCREENSHOT_DIR")]
    assert leaked == []
    assert not any(os.environ.get(n) for n in ("OPENAI_API_KEY", "ANTHROPIC_API_KEY",
                                               "GEMINI_API_KEY", "NVIDIA_API_KEY"))
