"""residency: plan and run several vLLM models on shared GPUs behind one LiteLLM proxy."""

__version__ = "0.1.0"
