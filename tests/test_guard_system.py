"""System test: regulated data never reaches a deployment the policy forbids.

Hypothesis draws a policy (action and hosting / tier / region limits per data class, a
tag rule), a catalog of four real OpenAI-compatible upstreams on loopback
(:class:`FaultyUpstream`) with random hosting, tier, region and order, a failure script
per upstream (HTTP 500, connection reset, timeout) and a request (with or without a fake
SSN and email, tagged or not, streamed or not). Each example runs a real gateway over
them and checks, from what every upstream actually received, across retries and
fallbacks:

- no upstream outside the policy's allowed set received anything at all;
- a raw sensitive value reached only upstreams allowed to see it raw;
- blocked requests reached no upstream and got a 403 OpenAI error;
- no raw value appears in any error body or usage / audit record;
- pseudonymised answers are restored for the client (the upstreams answer with the
  placeholder ``<US_SSN_1>``), and raw-sent ones are left as they are.
"""

from __future__ import annotations

import itertools
import json
from collections.abc import Iterator
from dataclasses import dataclass
from fnmatch import fnmatchcase
from typing import Any

import httpx
import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from _guard_fakes import RegexDetector
from _servers import serve_app
from faulty_upstream import Fault, FaultyUpstream
from modelmix.catalog import config_from_dict
from modelmix.engine import ChatService
from modelmix.guard import Guard, policy_from_dict
from modelmix.server import create_app
from modelmix.testing import ListSink

NAMES = ("d0", "d1", "d2", "d3")
HOSTINGS = ("local", "self-hosted", "cloud")
TIERS = ("open", "proprietary")
REGIONS = (None, "eu-west-1", "us-east-1")
_serial = itertools.count(1000)




@pytest.fixture(scope="module")
def upstreams() -> Iterator[dict[str, FaultyUpstream]]:
    ups = {name: FaultyUpstream(name).start() for name in NAMES}
    for up in ups.values():
        up.reply = f"hello from {up.name} <US_SSN_1>"
    yield ups
    for up in ups.values():
        up.stop()


# -- what hypothesis draws -------------------------------------------------------------------


def _subset(items: tuple[str, ...]) -> st.SearchStrategy[list[str] | None]:
    return st.one_of(st.none(), st.lists(st.sampled_from(items), min_size=1, unique=True))


@st.composite
def rules(draw: st.DrawFn) -> dict[str, Any]:
    action = draw(st.sampled_from(["allow", "route-local", "pseudonymise", "pseudonymise",
                                   "block"]))
    rule: dict[str, Any] = {"action": action}
    hosting = draw(_subset(("local", "self-hosted") if action == "route-local" else HOSTINGS))
    if hosting is not None:
        rule["hosting"] = hosting
    if action != "block":
        tiers = draw(_subset(TIERS))
        regions = draw(_subset(("eu-*", "us-*", "*")))
        if tiers is not None:
            rule["tiers"] = tiers
        if regions is not None:
            rule["regions"] = regions
    if action == "pseudonymise" and draw(st.booleans()):
        rule["send_raw_to"] = {"hosting": draw(st.lists(st.sampled_from(HOSTINGS),
                                                        min_size=1, unique=True))}
    return rule


@st.composite
def policies(draw: st.DrawFn) -> dict[str, Any]:
    classes = {cls: draw(rules()) for cls in ("confidential", "regulated")
               if draw(st.booleans()) or cls == "regulated"}
    policy: dict[str, Any] = {"name": "drawn", "classes": classes}
    if draw(st.booleans()):
        policy["tags"] = {"secret": draw(rules())}
    return policy


FAULTS = st.sampled_from([Fault.error(500), Fault.error(503), Fault.reset(), Fault.ok(),
                          Fault.ok()])


@st.composite
def catalogs(draw: st.DrawFn) -> dict[str, Any]:
    deps = [{"name": n, "hosting": draw(st.sampled_from(HOSTINGS)),
             "tier": draw(st.sampled_from(TIERS)), "region": draw(st.sampled_from(REGIONS))}
            for n in NAMES]
    order = draw(st.permutations(NAMES))
    faults = {n: draw(st.lists(FAULTS, max_size=3)) for n in NAMES}
    hang = draw(st.sampled_from([None, None, None, *NAMES]))  # at most one slow upstream
    if hang is not None:
        faults[hang] = [Fault.hang(1.0), *faults[hang]]
    return {"deps": deps, "order": list(order), "faults": faults,
            "by_name": draw(st.booleans())}


def _ssn(n: int) -> str:
    return f"{n % 900 + 100:03d}-{n % 89 + 10:02d}-{n % 9000 + 1000:04d}"


@st.composite
def requests(draw: st.DrawFn) -> dict[str, Any]:
    n = next(_serial)
    ssn = _ssn(n) if draw(st.integers(0, 3)) else None  # regulated 3 times in 4
    email = f"user{n}@example.org" if draw(st.booleans()) else None
    return {"ssn": ssn, "email": email, "tags": ["secret"] if draw(st.booleans()) else [],
            "stream": draw(st.booleans()), "where": draw(st.sampled_from(["user", "tool"]))}


# -- the oracle: an independent reading of the drawn policy ----------------------------------


@dataclass(frozen=True)
class Allowed:
    any: set[str]  # may receive the request at all
    raw: set[str]  # may receive raw sensitive values
    blocked: bool


def _in_scope(rule: dict[str, Any], dep: dict[str, Any]) -> bool:
    if rule.get("action") == "route-local" and dep["hosting"] == "cloud":
        return False
    if "hosting" in rule and dep["hosting"] not in rule["hosting"]:
        return False
    if "tiers" in rule and dep["tier"] not in rule["tiers"]:
        return False
    if "regions" in rule:
        region = dep["region"]
        return region is not None and any(fnmatchcase(region, p) for p in rule["regions"])
    return True


def _oracle(policy: dict[str, Any], cat: dict[str, Any], req: dict[str, Any]) -> Allowed:
    cls = "regulated" if req["ssn"] else "confidential" if req["email"] else "public"
    applied = [policy["classes"].get(cls, {"action": "allow"})]
    if req["tags"] and "tags" in policy:
        applied.append(policy["tags"]["secret"])
    applied = [r for r in applied if r is not None]
    names = {d["name"] for d in cat["deps"]}
    if any(r["action"] == "block" for r in applied):
        return Allowed(set(), set(), True)
    ok = {d["name"] for d in cat["deps"] if all(_in_scope(r, d) for r in applied)}
    pseudo = [r for r in applied if r["action"] == "pseudonymise"]
    raw = set(ok)
    if pseudo:
        raw = {d["name"] for d in cat["deps"] if d["name"] in ok and all(
            "send_raw_to" in r and _in_scope(r["send_raw_to"], d) for r in pseudo)}
    assert ok <= names
    return Allowed(ok, raw, False)


# -- running one example -----------------------------------------------------------------------


def _config(ups: dict[str, FaultyUpstream], cat: dict[str, Any]) -> dict[str, Any]:
    deps = [{**d, "provider": "openai-compatible", "base_url": ups[d["name"]].url,
             "model": f"model-{d['name']}", "timeout_s": 0.3} for d in cat["deps"]]
    first, *rest = cat["order"]
    return {"deployments": deps, "groups": {"chain": cat["order"]},
            "fallbacks": {first: rest}, "router": "ordered",
            "reliability": {"num_retries": 1, "backoff_base_s": 0.0, "backoff_max_s": 0.0,
                            "timeout_s": 4.0,
                            "circuit_breaker": {"failure_threshold": 50, "cooldown_s": 1}}}


def _messages(req: dict[str, Any]) -> list[dict[str, Any]]:
    found = " ".join(v for v in (req["ssn"], req["email"]) if v)
    text = f"please file this: {found or 'nothing sensitive'}"
    if req["where"] == "user":
        return [{"role": "user", "content": text}]
    return [{"role": "user", "content": "look it up"},
            {"role": "assistant", "tool_calls": [{"id": "c1", "type": "function", "function": {
                "name": "lookup", "arguments": json.dumps({"q": text})}}]},
            {"role": "tool", "tool_call_id": "c1", "content": text}]


def _post(http: httpx.Client, model: str, req: dict[str, Any]) -> tuple[int, str, str | None]:
    body = {"model": model, "messages": _messages(req), "stream": req["stream"],
            "tags": req["tags"]}
    if not req["stream"]:
        resp = http.post("/v1/chat/completions", json=body)
        return resp.status_code, resp.text, resp.headers.get("x-modelmix-deployment")
    with http.stream("POST", "/v1/chat/completions", json=body) as resp:
        lines = [line for line in resp.iter_lines() if line]
    text = "".join(_delta(line) for line in lines)
    return resp.status_code, text, resp.headers.get("x-modelmix-deployment")


def _delta(line: str) -> str:
    if not line.startswith("data: {"):
        return line
    event = json.loads(line[6:])
    if "error" in event:
        return json.dumps(event)
    return "".join(c["delta"].get("content") or "" for c in event.get("choices", ()))


def _cat(hostings: tuple[str, ...], faults: dict[str, list[Fault]] | None = None,
         by_name: bool = False) -> dict[str, Any]:
    deps = [{"name": n, "hosting": h, "tier": "open" if h != "cloud" else "proprietary",
             "region": "eu-west-1" if i % 2 else None}
            for i, (n, h) in enumerate(zip(NAMES, hostings, strict=True))]
    return {"deps": deps, "order": list(NAMES), "by_name": by_name,
            "faults": {n: (faults or {}).get(n, []) for n in NAMES}}


def _req(stream: bool = False, where: str = "user", tags: list[str] | None = None
         ) -> dict[str, Any]:
    n = next(_serial)
    return {"ssn": _ssn(n), "email": f"user{n}@example.org", "tags": tags or [],
            "stream": stream, "where": where}


def _policy(regulated: dict[str, Any], **extra: Any) -> dict[str, Any]:
    return {"name": "example", "classes": {"regulated": regulated}, **extra}


_CLOUD_FIRST = ("cloud", "cloud", "self-hosted", "local")
_FLAKY = {"d0": [Fault.error(500), Fault.reset()], "d2": [Fault.reset(), Fault.error(503)]}


@example(policy=_policy({"action": "pseudonymise"}), cat=_cat(_CLOUD_FIRST), req=_req())
@example(policy=_policy({"action": "pseudonymise"}), cat=_cat(_CLOUD_FIRST, _FLAKY),
         req=_req(stream=True, where="tool"))
@example(policy=_policy({"action": "pseudonymise", "send_raw_to": {"hosting": ["local"]}}),
         cat=_cat(("cloud", "local", "cloud", "local"), {"d0": [Fault.error(500)] * 2}),
         req=_req(stream=True))
@example(policy=_policy({"action": "route-local"}), cat=_cat(_CLOUD_FIRST, _FLAKY, True),
         req=_req())
@example(policy=_policy({"action": "route-local"}),
         cat=_cat(("local", "cloud", "self-hosted", "cloud"),
                  {"d0": [Fault.hang(1.0), Fault.reset()], "d2": [Fault.error(500)] * 2}),
         req=_req(stream=True))
@example(policy=_policy({"action": "allow", "regions": ["eu-*"]}), cat=_cat(_CLOUD_FIRST),
         req=_req(where="tool"))
@example(policy=_policy({"action": "allow"}, tags={"secret": {"action": "block"}}),
         cat=_cat(_CLOUD_FIRST), req=_req(tags=["secret"]))
@settings(max_examples=50, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(policy=policies(), cat=catalogs(), req=requests())
def test_regulated_data_never_reaches_a_forbidden_deployment(
        upstreams: dict[str, FaultyUpstream], policy: dict[str, Any], cat: dict[str, Any],
        req: dict[str, Any]) -> None:
    for name, up in upstreams.items():
        up.clear()
        up.reply = f"hello from {name} <US_SSN_1>"
        up.script(*cat["faults"][name])
    config = config_from_dict(_config(upstreams, cat))
    sink = ListSink()
    guard = Guard(policy_from_dict(policy), RegexDetector())
    service = ChatService(config, usage=sink, guard=guard)
    model = cat["order"][0] if cat["by_name"] else "chain"
    with serve_app(create_app(service=service)) as url, \
            httpx.Client(base_url=url, timeout=15) as http:
        status, text, served = _post(http, model, req)
    _check(upstreams, _oracle(policy, cat, req), req, status, text, served, sink)


def _check(ups: dict[str, FaultyUpstream], allowed: Allowed, req: dict[str, Any], status: int,
           text: str, served: str | None, sink: ListSink) -> None:
    secrets = [v for v in (req["ssn"], req["email"]) if v]
    for name, up in ups.items():
        for got in up.received:
            body = json.dumps(got.body)
            assert name in allowed.any, f"{name} is forbidden but received a request"
            for value in secrets:
                assert value not in body or name in allowed.raw, f"raw value reached {name}"
    if allowed.blocked:
        assert status == 403 and json.loads(text)["error"]["code"] == "data_policy_blocked"
    if status != 200 or '"error"' in text:
        assert not any(v in text for v in secrets), "raw value in an error body"
    elif served is not None:
        assert served in allowed.any
        raw_sent = req["ssn"] is None or served in allowed.raw
        assert (req["ssn"] or "") in text if not raw_sent else "<US_SSN_1>" in text
    records = [r for r in sink.records if r.audit is not None]
    assert len(records) == 1, sink.records
    dumped = json.dumps(records[0].to_dict())
    assert not any(v in dumped for v in secrets), "raw value in the usage / audit record"
    assert set(records[0].audit.forbidden) <= set(ups) - allowed.any  # type: ignore[union-attr]
