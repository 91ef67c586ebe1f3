"""Moved to residency.gpu (runtime and status both read memory through it); kept so older imports work."""

from residency.gpu import (  # noqa: F401
    DeviceReading,
    GpuReader,
    HostMemory,
    HostReader,
    NvmlReader,
    RecordedNvml,
    RecordedReader,
    get_reader,
    group_pids,
    group_processes,
    process_tree,
    read_host_memory,
    tree_bytes,
)
