"""Byte units, defined once. vLLM's logs and `nvidia-smi` say "GiB" and mean 2**30 bytes."""

MiB = 1 << 20
GiB = 1 << 30
