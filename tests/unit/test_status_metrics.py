"""vLLM /metrics normalisation across versions (fixtures under tests/fixtures/metrics)."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest

from residency.status.metrics import parse_metrics, scrape_metrics

FIX = Path(__file__).parent.parent / "fixtures" / "metrics"


def test_v0_engine_falls_back_to_gpu_cache_usage_perc():
    m = parse_metrics((FIX / "vllm-0.10.1-v0-engine-synthetic.txt").read_text())
    assert m.kv_cache_usage == pytest.approx(0.375)
    assert m.kv_cache_usage_name == "vllm:gpu_cache_usage_perc"
    assert (m.requests_running, m.requests_waiting) == (3.0, 1.0)
    assert m.generation_tokens_total == 812.0
    assert m.prompt_tokens_total == 5120.0
    # cache_config_info labels: 15360 blocks x 16 tokens = 245760 tokens
    assert (m.num_gpu_blocks, m.block_size, m.kv_cache_tokens) == (15360, 16, 245760)
    assert m.model_names == ("qwen3-8b",)
    assert m.prefix_cache_hit_rate is None  # V0 text has no prefix-cache counters


def test_v1_prefers_kv_cache_usage_perc_and_aggregates_engines():
    m = parse_metrics((FIX / "vllm-0.10.1-v1-dp2-synthetic.txt").read_text())
    assert m.kv_cache_usage_name == "vllm:kv_cache_usage_perc"
    assert m.kv_cache_usage == pytest.approx(0.7)  # mean of engines: (0.5 + 0.9) / 2
    assert (m.requests_running, m.requests_waiting) == (6.0, 5.0)  # summed: 4+2, 0+5
    assert m.generation_tokens_total == 420.0  # 300 + 120
    # new prefix-cache names win over the deprecated gpu_ ones: (600+200)/(1500+500) = 0.4
    assert m.prefix_cache_hit_rate == pytest.approx(0.4)


def test_kv_usage_from_new_name_alone():
    text = (
        '# TYPE vllm:kv_cache_usage_perc gauge\nvllm:kv_cache_usage_perc{engine="0",model_name="m"} 0.125\n'
    )
    m = parse_metrics(text)
    assert m.kv_cache_usage == pytest.approx(0.125)
    assert m.requests_running is None  # absent stays None, not 0


@pytest.mark.parametrize("text", ["", "<html><body>Not Found</body></html>", "garbage{ 1 2 3"])
def test_non_metrics_text_gives_empty_metrics(text):
    m = parse_metrics(text)
    assert m.kv_cache_usage is None and m.requests_running is None and m.model_names == ()


def test_real_capture_files_parse_with_all_core_fields():
    """Every capture from a real server carries KV usage, running and waiting."""
    real = sorted(p for p in FIX.glob("vllm-*.txt") if "synthetic" not in p.name)
    assert real, "no real /metrics capture under tests/fixtures/metrics"
    for p in real:
        m = parse_metrics(p.read_text())
        assert m.kv_cache_usage is not None and 0.0 <= m.kv_cache_usage <= 1.0, p.name
        assert m.requests_running is not None and m.requests_waiting is not None, p.name
        assert m.generation_tokens_total is not None, p.name
        assert m.model_names, p.name


def test_scrape_metrics_tolerates_errors():
    def handler(req: httpx.Request) -> httpx.Response:
        if req.url.port == 1:
            raise httpx.ConnectError("refused", request=req)
        if req.url.port == 2:
            return httpx.Response(404, text="not found")
        return httpx.Response(200, text='vllm:num_requests_waiting{model_name="x"} 2\n')

    with httpx.Client(transport=httpx.MockTransport(handler)) as c:
        assert scrape_metrics("http://127.0.0.1:1", client=c) is None
        assert scrape_metrics("http://127.0.0.1:2", client=c) is None
        m = scrape_metrics("http://127.0.0.1:3/", client=c)
        assert m is not None and m.requests_waiting == 2.0


def test_vllm_0_32_cpu_capture():
    """Captured from the toy vLLM 0.32.0 CPU server after 6 requests of 200 generated tokens."""
    m = parse_metrics((FIX / "vllm-0.32.0-cpu-toy-idle-after-requests.txt").read_text())
    assert m.kv_cache_usage_name == "vllm:kv_cache_usage_perc"  # 0.32: gpu_cache_usage_perc is gone
    assert m.kv_cache_usage == 0.0 and (m.requests_running, m.requests_waiting) == (0.0, 0.0)
    assert m.generation_tokens_total == 1200.0  # 6 x 200
    # 10922 blocks x 128 tokens = 1398016 tokens in VLLM_CPU_KVCACHE_SPACE=1 GiB
    assert (m.num_gpu_blocks, m.block_size, m.kv_cache_tokens) == (10922, 128, 1398016)
    assert m.kv_cache_memory_bytes == 1 << 30
    assert m.prefix_cache_hit_rate == pytest.approx(1280 / 2214)
    assert m.model_names == ("toy",)


def test_vllm_0_32_cpu_capture_under_burst():
    """Captured mid-burst: 8 requests (369 prompt + 3000 generated tokens) against max_num_seqs 4."""
    m = parse_metrics((FIX / "vllm-0.32.0-cpu-toy-burst.txt").read_text())
    assert (m.requests_running, m.requests_waiting) == (4.0, 4.0)  # 4 run, the other 4 queue
    # 94 of 10922 blocks in use = 0.861%: 4 sequences of ~3000 tokens, 128-token blocks (~23.5 each)
    assert m.kv_cache_usage == pytest.approx(94 / 10922, rel=1e-3)
    assert m.kv_cache_usage * m.kv_cache_tokens == pytest.approx(94 * 128, rel=1e-3)
    assert m.preemptions_total == 0.0
