"""Default addresses and ports, defined once (vLLM's and LiteLLM's own defaults)."""

LOCAL = "127.0.0.1"  # where residency probes a server that listens on all interfaces
DEFAULT_VLLM_PORT = 8000  # `vllm serve --port` default (vllm/entrypoints/openai/cli_args.py)
DEFAULT_VLLM_PORT_BASE = DEFAULT_VLLM_PORT  # a model without `port` is probed at 8000 + its index in the spec
DEFAULT_PROXY_PORT = 4000  # `litellm --port` default (litellm/proxy/proxy_cli.py)
