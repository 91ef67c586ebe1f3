"""The stack spec: one YAML file describing a device (or hosts), models and the proxy.

Engine settings use `vllm serve` flag names in snake_case, so a user can copy them from
vLLM's docs. Validation errors become one line naming the field (exit code 2).
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    StrictBool,
    ValidationError,
    field_validator,
    model_validator,
)

from residency.bounds import (
    MAX_HEADS,
    MAX_LAYERS,
    MAX_LIST,
    MAX_SEQS,
    MAX_VOCAB,
    MAX_WIDTH,
    Arg,
    BlockSize,
    Bytes,
    ComputeCapability,
    Count,
    EnvName,
    Float,
    GiB,
    GiBOrZero,
    Int,
    KVCacheDType,
    MambaDType,
    ModelDType,
    Name,
    Port,
    Quantization,
    Tokens,
    name_key,
)
from residency.errors import SpecError
from residency.ports import DEFAULT_PROXY_PORT

SUPPORTED_VLLM_VERSIONS = ("0.10.1", "0.33.0")  # inclusive range the memory model covers
DEFAULT_VLLM_VERSION = "0.33.0"

PositiveInt = Count  # kept for importers; every count is bounded (residency.bounds)
# A container image reference (registry/repo:tag or @digest), as `docker pull` takes it.
ImageRef = Annotated[str, Field(min_length=1, max_length=255, pattern=r"^[A-Za-z0-9][A-Za-z0-9._/:@+-]*$")]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True)


class DeviceSpec(_Strict):
    """One box's accelerator(s). A preset fills name, total and unified; explicit keys override."""

    preset: str | None = None
    name: str | None = None
    total_gib: GiB | None = None
    unified: StrictBool | None = None
    count: Count = 1
    used_gib: GiBOrZero = 0.0
    budget: Float(0.0, 1.0, lo_open=True) = 0.95
    # CUDA compute capability as "major.minor"; decides UMA detection, block alignment, batch tiers.
    compute_capability: ComputeCapability | None = None
    # Does NVML answer memory queries? (GB10 says N/A, which puts vLLM <=0.32 in the small batch tier.)
    nvml_memory: StrictBool | None = None
    # Unified memory: is the checkpoint in page cache and the torch.compile cache filled (warm) or not
    # (cold: the first launch on a box)? Host growth during profiling is charged to KV (memory/unified.py).
    start: Literal["cold", "warm"] = "cold"
    # Unified memory: kept free beside all footprints (OS page cache, agents). Default: memory/unified.py.
    host_reserve_gib: GiBOrZero | None = None


class ModelFactsOverride(_Strict):
    """Facts given by hand for an architecture the resolver cannot read (or to correct it)."""

    architecture: str | None = None
    num_hidden_layers: Int(1, MAX_LAYERS) | None = None
    hidden_size: Int(1, MAX_WIDTH) | None = None
    num_attention_heads: Int(1, MAX_HEADS) | None = None
    num_key_value_heads: Int(1, MAX_HEADS) | None = None
    head_dim: Int(1, MAX_HEADS * 4) | None = None
    vocab_size: Int(1, MAX_VOCAB) | None = None
    intermediate_size: Int(1, MAX_WIDTH) | None = None
    max_position_embeddings: Tokens | None = None
    sliding_window: Tokens | None = None
    weights_gib: GiB | None = None
    dtype: str | None = Field(default=None, max_length=32)


class ModelSpec(_Strict):
    name: Name
    model: str = Field(min_length=1, max_length=4096)
    revision: str | None = Field(default=None, max_length=256)
    gpu_memory_utilization: Float(0.0, 1.0, lo_open=True) | None = None
    kv_cache_memory_bytes: Bytes | None = None
    # pinned: on unified memory the planner proposes kv_cache_memory_bytes (vLLM >= 0.10.2) so the KV pool
    # does not depend on what profiling measures; fraction: size KV from gpu_memory_utilization only.
    kv_sizing: Literal["pinned", "fraction"] | None = None
    max_model_len: Tokens | None = None
    max_num_seqs: Int(1, MAX_SEQS) | None = None
    max_num_batched_tokens: Tokens | None = None
    tensor_parallel_size: Count = 1
    pipeline_parallel_size: Count = 1
    dtype: ModelDType = "auto"
    quantization: Quantization | None = None
    kv_cache_dtype: KVCacheDType = "auto"
    mamba_ssm_cache_dtype: MambaDType = "auto"
    block_size: BlockSize | None = None
    enable_prefix_caching: StrictBool | None = None
    enforce_eager: StrictBool = False
    enable_auto_tool_choice: StrictBool | None = None  # default: on when tool_call_parser is set
    tool_call_parser: str | None = None
    reasoning_parser: str | None = None
    chat_template: str | None = None
    port: Port | None = None
    min_concurrency: Int(1, MAX_SEQS) | None = None
    priority: Float(0.0, 1e6, lo_open=True) | None = None
    replicas: Count = 1
    host: str | None = Field(default=None, max_length=253)  # pin to a host of `hosts:` (multi-host specs)
    # pin to these GPU indices of the box (placement sets it)
    gpus: list[Int(0, 1023)] | None = Field(default=None, max_length=MAX_LIST)
    extra_args: list[Arg] = Field(default_factory=list, max_length=MAX_LIST)
    env: dict[EnvName, Arg] = Field(default_factory=dict, max_length=MAX_LIST)
    facts: ModelFactsOverride | None = None
    # container image for this model (compose / --runtime docker); default: vllm/vllm-openai:v<vllm_version>
    image: ImageRef | None = None

    @property
    def auto_tool_choice(self) -> bool:
        if self.enable_auto_tool_choice is not None:
            return self.enable_auto_tool_choice
        return self.tool_call_parser is not None


class ProxySpec(_Strict):
    port: Port = DEFAULT_PROXY_PORT
    host: str = "0.0.0.0"
    image: ImageRef = "ghcr.io/berriai/litellm:main-stable"
    master_key_env: EnvName = "LITELLM_MASTER_KEY"
    replicas: Count = 1
    # compose networking: bridge = a private network, only the proxy published; host = every service
    # on the host's network (`network_mode: host`, as DGX Spark playbooks run vLLM), each vLLM on its own port
    network: Literal["bridge", "host"] = "bridge"


class AgentsSpec(_Strict):
    """The agent clients the stack serves and which model each Hermes role uses."""

    clients: list[str] = Field(default_factory=lambda: ["hermes"], min_length=1, max_length=4)
    roles: dict[str, str] = Field(default_factory=dict, max_length=16)  # role -> models[].name
    max_tokens: Int(1, 1_048_576) | None = None  # Hermes's model.max_tokens

    @field_validator("clients")
    @classmethod
    def _known_clients(cls, v: list[str]) -> list[str]:
        from residency.agents.clients import CLIENT_KINDS

        bad = [k for k in v if k not in CLIENT_KINDS]
        if bad:
            raise ValueError(f"unknown client kind {bad[0]!r}; use {', '.join(CLIENT_KINDS)}")
        return list(dict.fromkeys(v))

    @field_validator("roles")
    @classmethod
    def _known_roles(cls, v: dict[str, str]) -> dict[str, str]:
        from residency.agents.clients import HERMES_ROLES

        bad = [r for r in v if r not in HERMES_ROLES]
        if bad:
            raise ValueError(f"unknown role {bad[0]!r}; Hermes roles are {', '.join(HERMES_ROLES)}")
        return v


class HostSpec(_Strict):
    name: Name
    address: str = "127.0.0.1"
    device: DeviceSpec
    labels: dict[str, str] = Field(default_factory=dict)


class StackSpec(_Strict):
    vllm_version: str = DEFAULT_VLLM_VERSION
    device: DeviceSpec | None = None
    hosts: list[HostSpec] | None = Field(default=None, max_length=MAX_LIST)
    placement: Literal["pack", "spread"] = "pack"
    models: list[ModelSpec] = Field(min_length=1, max_length=MAX_LIST)
    proxy: ProxySpec = Field(default_factory=ProxySpec)
    agents: AgentsSpec | None = None
    hf_cache: str = "~/.cache/huggingface"
    calibration_file: str | None = None  # default: ~/.config/residency/calibration.json

    @field_validator("vllm_version")
    @classmethod
    def _known_version(cls, v: str) -> str:
        v = str(v).lstrip("v")
        try:
            key = version_key(v)
        except ValueError:
            raise ValueError(f"'{v}' is not a vLLM version like 0.33.0") from None
        lo, hi = (version_key(x) for x in SUPPORTED_VLLM_VERSIONS)
        if not lo <= key[:3] <= hi:
            raise ValueError(
                f"{v} is outside the supported range {SUPPORTED_VLLM_VERSIONS[0]}-{SUPPORTED_VLLM_VERSIONS[1]}"
            )
        return v

    @model_validator(mode="after")
    def _device_or_hosts(self) -> StackSpec:
        if self.device is None and not self.hosts:
            self.device = DeviceSpec()  # validated later: a device needs a preset or total_gib
        _check_unique_names(self.models)
        names = [m.name for m in self.models]
        if self.agents is not None:
            for role, model in self.agents.roles.items():
                if model not in names:
                    raise ValueError(f"agents.roles.{role} names model {model!r}, which is not in models")
        if self.hosts:
            hn = [h.name for h in self.hosts]
            if len({name_key(h) for h in hn}) != len(hn):
                raise ValueError("host names must be unique (case, '.', '_' and '-' do not count)")
            for m in self.models:
                if m.host is not None and m.host not in hn:
                    raise ValueError(f"model {m.name!r} names host {m.host!r}, which is not in hosts")
            if self.proxy.network == "host":
                raise ValueError(
                    "proxy.network host is for one box; with hosts: remove it (each engine's port is published)"
                )
        else:
            _check_single_box(self)
        _check_block_sizes(self)
        return self


def _check_block_sizes(spec: StackSpec) -> None:
    """A block size is refused only where the spec's vLLM version refuses it (memory/versions.py)."""
    from residency.memory.device import is_cpu_name
    from residency.memory.versions import block_size_fix, block_size_refusal, rules_for

    devices = [spec.device] if spec.device is not None else [h.device for h in spec.hosts or []]
    if devices and all(is_cpu_name(d.name or d.preset or "") for d in devices):
        return  # vLLM's CPU backend has rules of its own (platforms/cpu.py): not modelled, so not refused
    rules = rules_for(spec.vllm_version)
    for i, m in enumerate(spec.models):
        if m.block_size is not None and (why := block_size_refusal(rules, m.block_size)) is not None:
            # SpecError is not a ValueError: pydantic lets it through with its field path intact
            raise SpecError(
                f"models[{i}:{m.name}].block_size",
                f"{m.block_size}: {why}",
                block_size_fix(rules, m.block_size),
            )


def _check_unique_names(models: list[ModelSpec]) -> None:
    """Names (and the `name-<i>` keys of extra replicas) must differ in more than case or punctuation:
    they become log files, compose services and Kubernetes objects."""
    seen: dict[str, str] = {}
    for m in models:
        keys = [m.name] + [f"{m.name}-{r}" for r in range(1, min(m.replicas, MAX_LIST))]
        for k in keys:
            other = seen.get(name_key(k))
            if other is not None and other != m.name:
                raise ValueError(
                    f"model names must be unique (case, '.', '_' and '-' do not count): "
                    f"{m.name!r} collides with {other!r}"
                )
            if other == m.name and k == m.name:
                raise ValueError(f"model names must be unique; repeated: {m.name}")
            seen[name_key(k)] = m.name


def _check_single_box(spec: StackSpec) -> None:
    """One box: explicit ports distinct and not the proxy's; replicas need their own GPUs."""
    ports: dict[int, str] = {}
    for m in spec.models:
        if m.port is not None:
            if m.port == spec.proxy.port:
                raise ValueError(
                    f"model {m.name!r} uses port {m.port}, the proxy's port; give it another port"
                )
            if m.port in ports:
                raise ValueError(
                    f"models {ports[m.port]!r} and {m.name!r} both use port {m.port}; give each its own port"
                )
            ports[m.port] = m.name
        count = spec.device.count if spec.device is not None else 1
        need = m.replicas * m.tensor_parallel_size * m.pipeline_parallel_size
        if m.replicas > 1 and need > count:
            raise ValueError(
                f"model {m.name!r} asks for {m.replicas} replicas x {need // m.replicas} GPU(s) on a box with "
                f"{count} device(s); lower replicas (each replica needs its own GPUs) or add hosts"
            )


def version_key(v: str) -> tuple[int, ...]:
    """'0.11.1' -> (0, 11, 1); '0.10.1.1' -> (0, 10, 1, 1)."""
    parts = str(v).lstrip("v").split(".")
    if len(parts) < 2 or not all(p.isdigit() for p in parts):
        raise ValueError(v)
    return tuple(int(p) for p in parts) + (0,) * max(0, 3 - len(parts))


def _loc(err: dict[str, Any], raw: Any) -> str:
    """Turn pydantic's loc tuple into 'models[1].max_model_len', naming models by name when possible."""
    out = ""
    node = raw
    for part in err["loc"]:
        if isinstance(part, int):
            label = str(part)
            if (
                isinstance(node, list)
                and part < len(node)
                and isinstance(node[part], dict)
                and node[part].get("name")
            ):
                label = f"{part}:{node[part]['name']}"
            out += f"[{label}]"
            node = node[part] if isinstance(node, list) and part < len(node) else None
        else:
            out += ("." if out else "") + str(part)
            node = node.get(part) if isinstance(node, dict) else None
    return out


_FIXES = {
    "extra_forbidden": "remove it or check the spelling; engine settings use vllm serve flag names in snake_case",
    "missing": "add it",
}


def parse_spec(raw: Any, source: str = "spec") -> StackSpec:
    if not isinstance(raw, dict):
        raise SpecError(source, "the spec must be a YAML mapping with a 'models' list")
    try:
        return StackSpec.model_validate(raw)
    except RecursionError:
        raise SpecError(
            source, "nests too deeply", "a spec is a mapping of plain settings and lists"
        ) from None
    except ValidationError as e:
        err = e.errors()[0]
        field = _loc(err, raw) or source
        msg = err["msg"].removeprefix("Value error, ")
        if (
            err["type"] not in ("extra_forbidden", "missing")
            and "input" in err
            and not isinstance(err["input"], dict | list)
        ):
            msg += f" (got {err['input']!r})"
        raise SpecError(field, msg, _FIXES.get(err["type"])) from None


def load_spec(path: str | Path) -> StackSpec:
    p = Path(path)
    if not p.is_file():
        raise SpecError(str(p), "no such file", "give the path of a stack spec YAML")
    try:
        raw = yaml.safe_load(p.read_text())
    except OSError as e:
        raise SpecError(str(p), f"cannot read it ({e.strerror})", "check the file's permissions") from None
    except UnicodeDecodeError:
        raise SpecError(str(p), "not a text file", "give the path of a stack spec YAML") from None
    except RecursionError:
        raise SpecError(
            str(p), "nests too deeply", "a spec is a mapping of plain settings and lists"
        ) from None
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f"{p}:{mark.line + 1}:{mark.column + 1}" if mark else str(p)
        problem = " ".join(f"malformed YAML: {getattr(e, 'problem', None) or e}".split())
        raise SpecError(where, problem, "fix the YAML syntax at that line and column") from None
    spec = parse_spec(raw, str(p))
    # A local model directory is relative to the spec's folder, for every command alike
    # (plan resolves facts from it; render mounts it; up serves it).
    for m in spec.models:
        local = local_model_dir(m.model, p.resolve().parent)
        if local is not None:
            m.model = str(local)
    return spec


def local_model_dir(ref: str, spec_dir: Path | None) -> Path | None:
    """The checkpoint directory when the model reference is a local path, else None (a hub id)."""
    looks_local = ref.startswith(("/", "./", "../", "~"))
    path = Path(ref).expanduser()
    if not path.is_absolute() and spec_dir is not None:
        path = spec_dir / path
    if looks_local or path.is_dir():
        return path.resolve()
    return None
