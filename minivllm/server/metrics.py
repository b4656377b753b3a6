"""Prometheus metrics for `GET /metrics`, with vLLM's names under a `minivllm:` prefix.

Mirrors vLLM's `PrometheusStatLogger` (`vllm/v1/metrics/loggers.py`): the engine loop calls
`record()` after every step with the queue sizes and what the step produced; this class turns
that into gauges, counters and histograms. prometheus-client does the bookkeeping and the text
exposition format; its metric objects are thread-safe, so the engine thread may record while
the event loop serves a scrape. Every metric carries a `model_name` label, as in vLLM, so
dashboards built for vLLM work after replacing `vllm:` with `minivllm:`.
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from minivllm.config import EngineConfig
from minivllm.engine.async_llm_engine import IterationStats, SchedulerStats

# vLLM's buckets, in seconds.
_TTFT_BUCKETS = (0.001, 0.005, 0.01, 0.02, 0.04, 0.06, 0.08, 0.1, 0.25, 0.5, 0.75, 1.0, 2.5,
                 5.0, 7.5, 10.0, 20.0, 40.0, 80.0, 160.0, 640.0, 2560.0)
_ITL_BUCKETS = (0.01, 0.025, 0.05, 0.075, 0.1, 0.15, 0.2, 0.3, 0.4, 0.5, 0.75, 1.0, 2.5, 5.0,
                7.5, 10.0, 20.0, 40.0, 80.0)
_REQUEST_LATENCY_BUCKETS = (0.3, 0.5, 0.8, 1.0, 1.5, 2.0, 2.5, 5.0, 10.0, 15.0, 20.0, 30.0,
                            40.0, 50.0, 60.0, 120.0, 240.0, 480.0, 960.0, 1920.0, 7680.0)
FINISH_REASONS = ("stop", "length", "abort")


def _1_2_5_buckets(max_value: int) -> tuple[float, ...]:
    """1, 2, 5, 10, 20, 50, ... up to max_value (vLLM's `build_1_2_5_buckets`)."""
    buckets, scale = [], 1
    while True:
        for mantissa in (1, 2, 5):
            if mantissa * scale > max_value:
                return tuple(buckets)
            buckets.append(float(mantissa * scale))
        scale *= 10


class PrometheusStatLogger:
    def __init__(self, registry: CollectorRegistry, model_name: str, config: EngineConfig,
                 num_gpu_blocks: int) -> None:
        labels = ["model_name"]

        def gauge(name: str, doc: str) -> Gauge:
            return Gauge(f"minivllm:{name}", doc, labels, registry=registry).labels(model_name)

        def counter(name: str, doc: str) -> Counter:
            return Counter(f"minivllm:{name}", doc, labels, registry=registry).labels(model_name)

        def histogram(name: str, doc: str, buckets: tuple[float, ...]) -> Histogram:
            return Histogram(f"minivllm:{name}", doc, labels, buckets=buckets,
                             registry=registry).labels(model_name)

        # Scheduler state, refreshed after every step.
        self.num_requests_running = gauge(
            "num_requests_running", "Number of sequences in model execution batches.")
        self.num_requests_waiting = gauge(
            "num_requests_waiting", "Number of sequences waiting to be processed.")
        self.kv_cache_usage = gauge(
            "kv_cache_usage_perc", "KV-cache usage. 1 means 100 percent usage.")
        # Counters (exposed with a `_total` suffix).
        self.num_preemptions = counter(
            "num_preemptions", "Cumulative number of preemptions from the engine.")
        self.prompt_tokens = counter("prompt_tokens", "Number of prefill tokens processed.")
        self.generation_tokens = counter(
            "generation_tokens", "Number of generation tokens processed.")
        # Prefix caching (vLLM v1's names): hit rate = hits / queries over any window.
        self.prefix_cache_queries = counter(
            "prefix_cache_queries", "Prefix cache queries, in terms of number of queried tokens.")
        self.prefix_cache_hits = counter(
            "prefix_cache_hits", "Prefix cache hits, in terms of number of cached tokens.")
        success = Counter("minivllm:request_success", "Count of successfully processed requests.",
                          [*labels, "finished_reason"], registry=registry)
        self.request_success = {r: success.labels(model_name, r) for r in FINISH_REASONS}
        # Latency histograms.
        self.time_to_first_token = histogram(
            "time_to_first_token_seconds", "Histogram of time to first token in seconds.",
            _TTFT_BUCKETS)
        self.inter_token_latency = histogram(
            "inter_token_latency_seconds", "Histogram of inter-token latency in seconds.",
            _ITL_BUCKETS)
        self.e2e_request_latency = histogram(
            "e2e_request_latency_seconds", "Histogram of e2e request latency in seconds.",
            _REQUEST_LATENCY_BUCKETS)
        token_buckets = _1_2_5_buckets(config.max_model_len or 1)
        self.request_prompt_tokens = histogram(
            "request_prompt_tokens", "Number of prefill tokens processed.", token_buckets)
        self.request_generation_tokens = histogram(
            "request_generation_tokens", "Number of generation tokens processed.", token_buckets)
        # The KV cache's shape, as a gauge fixed at 1 whose labels carry the values.
        Gauge("minivllm:cache_config_info", "Information of the KV cache configuration.",
              ["block_size", "num_gpu_blocks", "kv_allocator", "enable_prefix_caching"],
              registry=registry).labels(
            str(config.block_size), str(num_gpu_blocks), config.kv_allocator,
            str(config.enable_prefix_caching)).set(1)

    def record(self, scheduler_stats: SchedulerStats,
               iteration_stats: IterationStats | None) -> None:
        self.num_requests_running.set(scheduler_stats.num_running_reqs)
        self.num_requests_waiting.set(scheduler_stats.num_waiting_reqs)
        self.kv_cache_usage.set(scheduler_stats.kv_cache_usage)
        if iteration_stats is None:
            return
        self.num_preemptions.inc(iteration_stats.num_preempted_reqs)
        self.prompt_tokens.inc(iteration_stats.num_prompt_tokens)
        self.generation_tokens.inc(iteration_stats.num_generation_tokens)
        self.prefix_cache_queries.inc(iteration_stats.prefix_cache_queries)
        self.prefix_cache_hits.inc(iteration_stats.prefix_cache_hits)
        for ttft in iteration_stats.time_to_first_tokens:
            self.time_to_first_token.observe(ttft)
        for itl in iteration_stats.inter_token_latencies:
            self.inter_token_latency.observe(itl)
        for finished in iteration_stats.finished_requests:
            self.request_success[finished.finish_reason].inc()
            self.e2e_request_latency.observe(finished.e2e_latency)
            self.request_prompt_tokens.observe(finished.num_prompt_tokens)
            self.request_generation_tokens.observe(finished.num_generation_tokens)
