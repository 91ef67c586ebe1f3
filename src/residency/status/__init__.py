"""The live residency ledger (`residency status`).

* `gpu`     - `GpuReader` (NvmlReader, RecordedReader, HostReader), `get_reader()`: device and
              per-process memory; importable without NVIDIA libraries (up uses it too).
* `metrics` - `parse_metrics`/`scrape_metrics`: vLLM /metrics normalised across 0.10.1-0.33.0.
* `ledger`  - `build_ledger` (collect) and `assess` (pure drift rules) -> `Ledger`.
* `watch`   - `iter_ledgers`: one reader, plan and HTTP client for a refreshing watch.
* `view`    - `render_ledger`: the rich table.
"""
