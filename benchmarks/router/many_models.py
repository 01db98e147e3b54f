"""Many models, priced (issue 15, must-have 3): route among the 11 models of the AlpacaEval
chat table by predicted quality and compare the quality-cost frontier with every single
model, random mixing and the best pair. About 40 s on 2 cores (5 trainings).

    .venv/bin/python benchmarks/router/many_models.py   # writes many_models.json / .png

The same as ``modelmix router eval --frontier --data ../shared/data/alpacaeval/chat.csv
--prices benchmarks/router/chat_prices.yaml``, with the results named for this folder.
Quality is P(a GPT-4-turbo judge preferred the model's answer over gpt4_1106_preview's),
so gpt4_1106_preview is 0.5 by construction. Only numbers and the plot are written: the
table (CC BY-NC 4.0) is read from ../shared and never copied, and no router trained on it
is saved.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

from rich.console import Console

from modelmix.cli._eval import EvalRequest
from modelmix.cli._eval_frontier import frontier_report_for
from modelmix.eval._frontier_output import frontier_markdown, write_frontier

ROOT = Path(__file__).resolve().parents[2]
HERE = Path("benchmarks/router")               # paths relative to the repository root, so
CHAT = Path("../shared/data/alpacaeval/chat.csv")   # results.json records no local ones
PRICES = HERE / "chat_prices.yaml"


def main() -> None:
    os.chdir(ROOT)
    if not CHAT.exists():
        sys.exit(f"{CHAT} not found (the AlpacaEval chat table lives in ../shared)")
    req = EvalRequest(data=[CHAT], out=HERE, frontier=True, prices=PRICES, folds=5, seed=0)
    report = frontier_report_for(req, Console(stderr=True))
    results, plot = write_frontier(
        report, HERE, extra={"options": req.describe()}, results_name="many_models.json",
        plot_name="many_models.png",
        title=f"AlpacaEval chat ({report.n_prompts} prompts, 5-fold CV): routing among "
              f"{len(report.models)} models at list prices",
        quality_label="P(judge prefers the answer over gpt-4-1106-preview's)")
    print(frontier_markdown(report))
    print(f"\nwrote {results} and {plot}")


if __name__ == "__main__":
    main()
