"""The fleet's litellm.yaml in front of two real toy vLLM servers, each standing for one host.

Placement and rendering run for real (planner on the toy checkpoint); the test then points the two
placed replicas at the two servers' actual ports (on a real fleet each host runs its vLLM on the
placed port; here both "hosts" are 127.0.0.1). The rendered config must load-balance the one
model name over both servers, and keep serving when one is stopped.
"""

from __future__ import annotations

import httpx
import pytest
import yaml

from residency.planner.placement import place_fleet
from residency.render.fleet import render_fleet
from residency.spec import parse_spec
from tests.e2e.stackkit import CPU_VLLM_ARGS, TOOL_ARGS_HERMES, model_path

pytestmark = pytest.mark.e2e


def served_requests(srv) -> float:
    """vLLM's finished-request counter (vllm:request_success_total, all finish reasons)."""
    from prometheus_client.parser import text_string_to_metric_families

    text = httpx.get(srv.url + "/metrics", timeout=10).text
    total = 0.0
    for fam in text_string_to_metric_families(text):
        if fam.name in ("vllm:request_success", "vllm:request_success_total"):
            total += sum(s.value for s in fam.samples if s.name.endswith("_total"))
    return total


def chat(proxy, n: int, stop_after_retry: bool = False) -> list[tuple[int, str, int]]:
    """n chats through the proxy: (status, api_base that served it, retries LiteLLM made) each.

    LiteLLM names the deployment that answered and its retries in the x-litellm-model-api-base
    and x-litellm-attempted-retries response headers (LiteLLM >= 1.60)."""
    out = []
    with httpx.Client(timeout=120) as c:
        for i in range(n):
            r = c.post(
                proxy.base_url + "/chat/completions",
                headers=proxy.headers,
                json={
                    "model": "hermes",
                    "messages": [{"role": "user", "content": f"hi {i}"}],
                    "max_tokens": 2,
                },
            )
            retries = int(r.headers.get("x-litellm-attempted-retries") or 0)
            out.append((r.status_code, r.headers.get("x-litellm-model-api-base", ""), retries))
            if stop_after_retry and retries:
                break
    return out


def test_rendered_fleet_config_balances_and_survives_a_stopped_replica(
    toy_hermes, vllm_factory, litellm_factory, tmp_path
):
    second = vllm_factory("toy-hermes", "hermes", [*CPU_VLLM_ARGS, *TOOL_ARGS_HERMES])
    dev = {"name": "cpu-box", "total_gib": 16.0, "unified": False}
    spec = parse_spec(
        {
            "hosts": [
                {"name": "box-a", "address": "127.0.0.1", "device": dev},
                {"name": "box-b", "address": "127.0.0.1", "device": dev},
            ],
            "models": [
                {
                    "name": "hermes",
                    "model": str(model_path("toy-hermes")),
                    "replicas": 2,
                    "max_model_len": 4096,
                    "max_num_seqs": 4,
                    "tool_call_parser": "hermes",
                }
            ],
        }
    )
    fleet = place_fleet(spec)
    assert fleet.fits, (fleet.unplaced, fleet.warnings)
    # replicas of one model go to distinct GPUs: one per box
    assert sorted(p.host for p in fleet.placements) == ["box-a", "box-b"]
    ports = {"box-a": toy_hermes.port, "box-b": second.port}
    for p in fleet.placements:
        p.port = ports[p.host]
    files = render_fleet(spec, fleet, tmp_path)
    for rel in ("litellm.yaml", ".env"):
        (tmp_path / rel).write_text(files[rel].content)
    key = files[".env"].content.split("LITELLM_MASTER_KEY=", 1)[1].split()[0]
    cfg = yaml.safe_load(files["litellm.yaml"].content)
    assert [e["model_name"] for e in cfg["model_list"]] == ["hermes", "hermes"]

    proxy = litellm_factory(config_path=tmp_path / "litellm.yaml", env={"LITELLM_MASTER_KEY": key})
    a0, b0 = served_requests(toy_hermes), served_requests(second)
    n = 16
    res = chat(proxy, n)
    assert [code for code, _, _ in res] == [200] * n
    da, db = served_requests(toy_hermes) - a0, served_requests(second) - b0
    # uniform random choice: both get some (all 16 on one server: p = 2 x 0.5^16 = 3e-5)
    assert da + db == n and da > 0 and db > 0, (da, db)
    # the proxy's own account agrees with the servers' counters
    bases = [base.rstrip("/") for _, base, _ in res]
    assert (
        bases.count(toy_hermes.base_url.rstrip("/")) == da and bases.count(second.base_url.rstrip("/")) == db
    )

    second.stop()
    a1 = served_requests(toy_hermes)
    # Requests until one is routed to the stopped replica (a coin flip each: 30 tries all missing
    # it has p = 1e-9): it fails to connect and is retried on the live one (num_retries 3;
    # allowed_fails 0 cools the stopped replica down at its first failure). Agents see no error.
    res = chat(proxy, 30, stop_after_retry=True)
    assert [code for code, _, _ in res] == [200] * len(res)
    assert res[-1][2] >= 1, "no request was routed to the stopped replica"
    assert all(base.rstrip("/") == toy_hermes.base_url.rstrip("/") for _, base, _ in res)
    # and the proxy keeps serving without errors afterwards
    more = chat(proxy, 4)
    assert [code for code, _, _ in more] == [200] * 4
    assert served_requests(toy_hermes) - a1 == len(res) + 4
