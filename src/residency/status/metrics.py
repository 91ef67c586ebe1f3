"""vLLM's Prometheus `/metrics`, normalised across versions 0.10.1-0.33.0.

Names as vLLM's own code declares them (vllm/v1/metrics/loggers.py; V0: vllm/engine/metrics.py):

* KV usage, 0-1 scale ("1 means 100 percent usage"):
  - `vllm:kv_cache_usage_perc`: V1 engine, 0.10.1-0.33.0 (renamed in 0.9).
  - `vllm:gpu_cache_usage_perc`: V0 engine (<= 0.10.x); V1 emits it by default up to 0.10.x, only
    with `--show-hidden-metrics-for-version=0.10` in 0.11.x, and no longer at all by 0.33.0.
* `vllm:num_requests_running`, `vllm:num_requests_waiting`: gauges, every version.
* `vllm:generation_tokens_total`, `vllm:prompt_tokens_total`: counters, every version (V1 declares
  `vllm:generation_tokens`; the client library appends `_total`).
* Prefix cache: `vllm:prefix_cache_queries_total` / `vllm:prefix_cache_hits_total` (V1 >= 0.9);
  `vllm:gpu_prefix_cache_queries_total` / `..._hits_total` (deprecated names, 0.10.x, hidden 0.11.x).
* `vllm:num_preemptions_total` (V1; V0 also `_total`).
* `vllm:cache_config_info`: an info gauge whose labels carry `num_gpu_blocks`, `block_size`, ...

Data-parallel servers label one series per engine (`engine="0"`...): counts are summed, KV usage
is averaged over engines. Anything absent stays None: a proxy path, an old build or a server
still starting has no (or fewer) metrics, and that is not an error.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class VllmMetrics:
    kv_cache_usage: float | None = None  # 0-1
    kv_cache_usage_name: str | None = None  # which metric gave it (tells the version apart)
    requests_running: float | None = None
    requests_waiting: float | None = None
    generation_tokens_total: float | None = None
    prompt_tokens_total: float | None = None
    prefix_cache_queries_total: float | None = None
    prefix_cache_hits_total: float | None = None
    preemptions_total: float | None = None
    num_gpu_blocks: int | None = None
    block_size: int | None = None
    kv_cache_memory_bytes: int | None = None  # cache_config_info label (>= 0.10.2 when set or resolved)
    model_names: tuple[str, ...] = ()

    @property
    def prefix_cache_hit_rate(self) -> float | None:
        q, h = self.prefix_cache_queries_total, self.prefix_cache_hits_total
        if q is None or h is None or q <= 0:
            return None
        return h / q

    @property
    def kv_cache_tokens(self) -> int | None:
        if self.num_gpu_blocks is None or self.block_size is None:
            return None
        return self.num_gpu_blocks * self.block_size


# normalised field -> sample names in order of preference (first present wins)
_GAUGES_MEAN = {"kv_cache_usage": ("vllm:kv_cache_usage_perc", "vllm:gpu_cache_usage_perc")}
_SUMS = {
    "requests_running": ("vllm:num_requests_running",),
    "requests_waiting": ("vllm:num_requests_waiting",),
    "generation_tokens_total": ("vllm:generation_tokens_total",),
    "prompt_tokens_total": ("vllm:prompt_tokens_total",),
    "prefix_cache_queries_total": ("vllm:prefix_cache_queries_total", "vllm:gpu_prefix_cache_queries_total"),
    "prefix_cache_hits_total": ("vllm:prefix_cache_hits_total", "vllm:gpu_prefix_cache_hits_total"),
    "preemptions_total": ("vllm:num_preemptions_total",),
}


def parse_metrics(text: str) -> VllmMetrics:
    """Normalise the text of a vLLM /metrics page. Malformed text yields an empty VllmMetrics."""
    from prometheus_client.parser import text_string_to_metric_families

    samples: dict[str, list[float]] = {}
    models: set[str] = set()
    info: dict[str, str] = {}
    try:
        for fam in text_string_to_metric_families(text):
            for s in fam.samples:
                if not s.name.startswith("vllm:"):
                    continue
                samples.setdefault(s.name, []).append(float(s.value))
                if "model_name" in s.labels:
                    models.add(s.labels["model_name"])
                if s.name == "vllm:cache_config_info" and not info:
                    info = dict(s.labels)
    except ValueError:  # not Prometheus text (e.g. an HTML error page)
        return VllmMetrics()

    fields: dict[str, object] = {}
    for field, names in _GAUGES_MEAN.items():
        for n in names:
            vals = [v for v in samples.get(n, []) if v == v]  # drop NaN
            if vals:
                fields[field] = sum(vals) / len(vals)
                fields[field + "_name"] = n
                break
    for field, names in _SUMS.items():
        for n in names:
            if n in samples:
                fields[field] = sum(samples[n])
                break
    for key in ("num_gpu_blocks", "block_size", "kv_cache_memory_bytes"):
        v = info.get(key)
        if v not in (None, "", "None"):
            try:
                fields[key] = int(float(v))
            except ValueError:
                pass
    return VllmMetrics(model_names=tuple(sorted(models)), **fields)  # type: ignore[arg-type]


def scrape_metrics(base_url: str, client=None, timeout: float = 2.0) -> VllmMetrics | None:
    """GET {base_url}/metrics; None when the server does not answer with 200."""
    import httpx

    url = base_url.rstrip("/") + "/metrics"
    try:
        from residency.deadline import deadline_get

        r = client.get(url, timeout=timeout) if client is not None else deadline_get(url, timeout)
    except httpx.HTTPError:
        return None
    if r.status_code != 200:
        return None
    return parse_metrics(r.text)
