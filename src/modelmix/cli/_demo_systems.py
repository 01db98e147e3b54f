"""The demo's "systems" section: one request to each blueprint, showing the steps taken
and the cost against sending the same tokens to a proprietary deployment. The
document-intake request carries a form image the demo draws itself (Pillow, from the
``media`` extra), read by local OCR."""

from __future__ import annotations

import base64
import io
from dataclasses import dataclass
from typing import Any

from rich import box
from rich.markup import escape
from rich.table import Table

from modelmix.catalog import Deployment

__all__ = ["DOCUMENT_REQUEST", "SYSTEM_REQUESTS", "SystemResult", "form_image", "run_systems",
           "systems_table"]

#: (system, what the request shows, prompt): written for the demo; the PHI, card and
#: host values are made up.
SYSTEM_REQUESTS: list[tuple[str, str, str]] = [
    ("healthcare-triage", "general question",
     "What is a normal resting heart rate for an adult?"),
    ("healthcare-triage", "PHI -> stays local",
     "Patient Maria Lopez, MRN 48213377, DOB 04/11/1958, takes metformin 500 mg twice a "
     "day and reports dizziness. What should the nurse check first?"),
    ("finance-analyst", "card pseudonymised",
     "Card 4111 1111 1111 1111 was charged 3 times $19.99 this month. What is the total?"),
    ("manufacturing-maintenance", "report -> record + RCA",
     "Press 4 on line 3 tripped on overtemperature twice this shift. Replaced hydraulic "
     "filter P/N HX-4410-B (Acme quote $41.20 per unit); logs on plc-line3-01.plant.internal "
     "show the oil at 71 C before each trip."),
]


#: The document-intake request: an instruction and the lines of the form image it carries
#: (made-up values).
DOCUMENT_REQUEST = ("document-intake", "scanned form -> fields",
                    "File this intake form.",
                    ["INTAKE FORM", "Name: Maria Lopez", "Date of birth: 04/11/1958",
                     "Member ID: 48213377", "Reason for visit: dizziness"])


def form_image(lines: list[str]) -> str | None:
    """``lines`` drawn black on white as a PNG data URL; None without Pillow."""
    try:
        from PIL import Image, ImageDraw, ImageFont
    except ImportError:
        return None
    image = Image.new("RGB", (900, 60 + 56 * len(lines)), "white")
    draw = ImageDraw.Draw(image)
    font = ImageFont.load_default(size=30)
    for n, line in enumerate(lines):
        draw.text((30, 30 + 56 * n), line, fill="black", font=font)
    out = io.BytesIO()
    image.save(out, "PNG")
    return "data:image/png;base64," + base64.b64encode(out.getvalue()).decode()


@dataclass(slots=True)
class SystemResult:
    system: str
    label: str
    prompt: str = ""
    status: int = 200
    steps: str = "-"
    reason: str = "-"
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cost_usd: float = 0.0
    answer: str = ""
    error: str = ""


def run_systems(client: Any, max_tokens: int) -> list[SystemResult]:
    """Send each of :data:`SYSTEM_REQUESTS` whose blueprint the gateway serves (its
    ``/v1/models`` lists it) through the gateway with the OpenAI SDK."""
    served = {m.id for m in client.models.list()}
    results = [_send(client, system, label, prompt, prompt, max_tokens)
               for system, label, prompt in SYSTEM_REQUESTS if f"system/{system}" in served]
    system, label, prompt, lines = DOCUMENT_REQUEST
    image = form_image(lines)
    if f"system/{system}" in served and image is not None:
        content = [{"type": "text", "text": prompt},
                   {"type": "image_url", "image_url": {"url": image}}]
        # no cap from the workload: the fields step needs room for its JSON (the
        # blueprint caps it at 400 tokens and the grammar ends it when the JSON is done)
        results.append(_send(client, system, label, f"{prompt} [form image]", content,
                             None))
    return results


def _send(client: Any, system: str, label: str, prompt: str, content: Any,
          max_tokens: int | None) -> SystemResult:
    res = SystemResult(system, label, prompt)
    try:
        raw = client.chat.completions.with_raw_response.create(
            model=f"system/{system}", temperature=0,
            **({} if max_tokens is None else {"max_tokens": max_tokens}),
            messages=[{"role": "user", "content": content}])
        body = raw.parse()
        res.steps = raw.headers.get("x-modelmix-steps", "-")
        res.reason = raw.headers.get("x-modelmix-route-reason", "-")
        res.cost_usd = float(raw.headers.get("x-modelmix-cost-usd", "0"))
        res.answer = body.choices[0].message.content or ""
        if body.usage:
            res.prompt_tokens = body.usage.prompt_tokens
            res.completion_tokens = body.usage.completion_tokens
    except Exception as exc:  # the demo reports every failure in its table
        res.status = getattr(exc, "status_code", 0) or 0
        res.error = f"{type(exc).__name__}: {exc}"[:200]
    return res


def systems_table(results: list[SystemResult], ref: Deployment | None,
                  shorten: Any) -> Table:
    """One row per system request: steps (``step:deployment``), what the route reason
    says the steps decided, tokens, cost and the same tokens on ``ref``."""
    table = Table(title="Systems of models (blueprints, docs/systems.md)", box=box.SIMPLE_HEAD,
                  collapse_padding=True, pad_edge=False)
    ref_col = f"all on {ref.name}" if ref is not None else "all-proprietary"
    table.add_column("system / request", no_wrap=False, max_width=28)
    table.add_column("steps (step:deployment)", no_wrap=False, max_width=30)
    table.add_column("what the steps decided", no_wrap=False, max_width=58)
    table.add_column("cost USD", no_wrap=True)
    table.add_column(f"{ref_col} USD", no_wrap=True)
    table.add_column("answer", overflow="ellipsis", no_wrap=True, max_width=24)
    if not results:
        table.caption = "this catalog has no blueprints (include_systems: [builtin])"
    for r in results:
        all_prop = ref.cost_usd(r.prompt_tokens, r.completion_tokens) if ref else 0.0
        decided = _decisions(r.reason) if not r.error else f"{r.status}: {r.error}"
        table.add_row(f"{r.system}\n[dim]{r.label}:[/dim]\n[dim italic]"
                      f"{escape(shorten(r.prompt, 70))}[/dim italic]", r.steps.replace(",", ", "),
                      decided, f"{r.cost_usd:.6f}", f"{all_prop:.6f}",
                      shorten(r.answer or r.error, 24), end_section=True)
    return table


def _decisions(reason: str) -> str:
    """The route reason without the ``system <name>:`` prefix."""
    _, sep, rest = reason.partition(": ")
    return rest if sep and reason.startswith("system ") else reason
