"""Find a model's config.json and checkpoint size, and read them into ModelFacts.

`resolve_model(m)` tries, in order:
  1. a local directory (m.model is an existing path): config.json, plus the checkpoint size from
     `model.safetensors.index.json` metadata.total_size or, without an index, the safetensors
     headers (8-byte little-endian header length + JSON header; tensor bytes = data_offsets span);
  2. the bundled catalog (`catalog.lookup`: HF id case-insensitive, or the bare repo name);
  3. the Hugging Face cache (HF_HUB_CACHE, else <hf_cache>/hub, else HF_HOME/hub): the snapshot
     `refs/<revision or main>` points at;
  4. ModelSpec.facts alone when it describes the whole model (source "manual"), before any network;
  5. the Hub (huggingface_hub): config.json and the safetensors index / header only, never the
     weights; honours HF_ENDPOINT, HF_TOKEN and HF_HUB_OFFLINE. Every Hub request runs under
     residency's total deadlines (deadline.py): HUB_TIMEOUT_S per request, HUB_TOTAL_S for the whole
     resolve including huggingface_hub's retries.
ModelSpec.facts then applies on top of whatever was found.

Results are cached in-process, so `residency plan` pays for each model once.
huggingface_hub is imported only on the cache and Hub paths (CLI start-up stays fast).
"""

from __future__ import annotations

import json
import os
import struct
from collections.abc import Iterator
from contextlib import contextmanager
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING, Any

from residency.bounds import MAX_BYTES
from residency.errors import ResidencyError, SpecError, UnknownModelError
from residency.memory import catalog
from residency.memory.config_facts import apply_override, facts_from_config, facts_from_override
from residency.memory.model_facts import ModelFacts

if TYPE_CHECKING:
    from residency.deadline import Budget
    from residency.spec import ModelSpec

HUB_TIMEOUT_S = 5.0  # per request; the Hub path is a fallback, it must not stall `plan`
HUB_URL = "https://huggingface.co"
HUB_TOTAL_S = 30.0  # one model's whole Hub resolve (probe, config, index or header, preprocessor)
INDEX_FILE = "model.safetensors.index.json"


def resolve_model(m: ModelSpec, hf_cache: str | None = None) -> ModelFacts:
    """ModelFacts for one spec entry (see the module docstring for the search order)."""
    facts_key = m.facts.model_dump_json(exclude_none=True) if m.facts is not None else None
    return _resolve_cached(m.model, m.revision, hf_cache, facts_key, m.name)


@lru_cache(maxsize=256)
def _resolve_cached(
    model: str, revision: str | None, hf_cache: str | None, facts_key: str | None, name: str
) -> ModelFacts:
    from residency.spec import ModelFactsOverride

    field = f"models[{name}].model"
    override = ModelFactsOverride.model_validate_json(facts_key) if facts_key else None
    found = _find(model, revision, hf_cache, field, override)
    if found.source == "manual":
        return found
    return apply_override(found, override)


def _find(model: str, revision: str | None, hf_cache: str | None, field: str, override: Any) -> ModelFacts:
    path = Path(model).expanduser()
    looks_like_path = model.startswith((".", "/", "~")) or path.is_dir()
    if looks_like_path:
        if not path.is_dir():
            raise SpecError(
                field,
                f"{model!r} is not a directory",
                "give an existing model directory or a Hugging Face id",
            )
        return facts_from_local_dir(path, field=field)

    entry = catalog.lookup(model)
    if entry is not None:
        return facts_from_config(
            entry.config,
            model_id=entry.id,
            source="catalog",
            checkpoint_bytes=entry.total_size_bytes,
            field=field,
            param_count=entry.param_count,
            dtype=entry.dtype,
            hf_quant_config=entry.hf_quant_config,
            multimodal=entry.multimodal or None,
            preprocessor=entry.preprocessor_config,
        )

    repo_id = model.removeprefix("hf://")
    valid_id = _is_repo_id(repo_id)
    if valid_id:
        snap = find_cached_snapshot(repo_id, revision, hf_cache)
        if snap is not None:
            return _facts_from_files(snap, model_id=repo_id, source="hf-cache", field=field)

    if override is not None and _override_is_complete(override):
        return facts_from_override(model, override, field=field)

    if not valid_id:
        raise SpecError(
            field,
            f"{model!r} is neither a local directory nor a Hugging Face id (org/name)",
            "give a catalog id such as Qwen/Qwen3-4B-Instruct-2507, an org/name Hub id, or a model directory",
        )
    reason = _hub_unavailable_reason()
    if reason is None:
        try:
            return facts_from_hub(repo_id, revision, hf_cache, field=field)
        except ResidencyError:
            raise
        except _NotFound as e:
            reason = str(e)
    if override is not None:
        miss = [k for k in _MANUAL_KEYS if getattr(override, k, None) is None]
        reason += f"; {field.rsplit('.', 1)[0]}.facts lacks {', '.join(miss)} to describe it alone"
    raise _unknown(model, field, hf_cache, reason)


class _NotFound(Exception):
    pass


_MANUAL_KEYS = ("num_hidden_layers", "hidden_size", "num_attention_heads", "vocab_size", "weights_gib")


def _override_is_complete(o: Any) -> bool:
    return all(v is not None for v in (o.num_hidden_layers, o.hidden_size, o.vocab_size, o.weights_gib)) and (
        o.num_attention_heads is not None or (o.num_key_value_heads is not None and o.head_dim is not None)
    )


def _is_repo_id(s: str) -> bool:
    parts = s.split("/")
    return len(parts) == 2 and all(p and not p.startswith(".") and " " not in p for p in parts)


def _unknown(model: str, field: str, hf_cache: str | None, reason: str) -> SpecError:
    near = catalog.suggest(model)
    hint = f"did you mean {' or '.join(near)}? " if near else ""
    where = ", ".join(str(d) for d in hub_cache_dirs(hf_cache)) or "~/.cache/huggingface/hub"
    return SpecError(
        field,
        f"unknown model {model!r}: not a local directory, not in the bundled catalog, not in the Hugging Face "
        f"cache ({where}), and {reason}",
        f"{hint}use a bundled catalog id, a local directory with config.json, fetch the config with `hf download {model} config.json`, or give it by hand under "
        f"{field.rsplit('.', 1)[0]}.facts (num_hidden_layers, hidden_size, num_attention_heads, "
        "num_key_value_heads, head_dim, vocab_size, weights_gib)",
    )


def _hub_unavailable_reason() -> str | None:
    v = (os.environ.get("HF_HUB_OFFLINE") or os.environ.get("TRANSFORMERS_OFFLINE") or "").strip().lower()
    if v in ("1", "true", "yes", "on"):
        return "the Hub is off (HF_HUB_OFFLINE is set)"
    return None


# --------------------------------------------------------------------------------------------
# local files


def safetensors_tensor_bytes(path: str | Path) -> int:
    """Sum of tensor data bytes in one .safetensors file, read from its header only.

    Layout: u64 little-endian N, then N bytes of JSON {name: {dtype, shape, data_offsets: [a, b]}}.
    """
    with open(path, "rb") as f:
        head = f.read(8)
        if len(head) != 8:
            raise ValueError(f"{path}: not a safetensors file (shorter than 8 bytes)")
        (n,) = struct.unpack("<Q", head)
        if n > 100 * 1024 * 1024:
            raise ValueError(f"{path}: safetensors header of {n} bytes is implausible")
        try:
            header = json.loads(f.read(n))
        except RecursionError:
            raise ValueError(f"{path}: safetensors header nests too deeply") from None
    if not isinstance(header, dict):
        raise ValueError(f"{path}: safetensors header is a JSON {type(header).__name__}, not an object")
    total = 0
    for name, info in header.items():
        if name == "__metadata__":
            continue
        offs = info.get("data_offsets") if isinstance(info, dict) else None
        if not (
            isinstance(offs, list)
            and len(offs) == 2
            and all(isinstance(x, int) and not isinstance(x, bool) for x in offs)
            and 0 <= offs[0] <= offs[1] <= MAX_BYTES
        ):
            raise ValueError(
                f"{path}: tensor {name[:60]!r} has data_offsets {str(offs)[:40]}, not [start, end] bytes"
            )
        total += offs[1] - offs[0]
    return total


def index_total_size(data: Any, where: str) -> int | None:
    """metadata.total_size of a safetensors index (parsed JSON), None when absent; ValueError when malformed."""
    if not isinstance(data, dict):
        raise ValueError(f"{where} is a JSON {type(data).__name__}, not an object")
    meta = data.get("metadata", {})
    if not isinstance(meta, dict):
        raise ValueError(f"{where}: metadata is a JSON {type(meta).__name__}, not an object")
    total = meta.get("total_size")
    if total is None:
        return None
    if isinstance(total, bool) or not isinstance(total, int | float) or not 0 < total <= MAX_BYTES:
        raise ValueError(f"{where}: metadata.total_size is {str(total)[:40]}, not a byte count")
    return int(total)


def checkpoint_bytes_in_dir(d: Path, field: str = "model") -> int | None:
    """metadata.total_size of the safetensors index, else the sum over *.safetensors headers.

    A malformed index or header (not an object, negative or absurd sizes, offsets out of order) is a
    SpecError naming the file: guessing a size from it would give a wrong plan that looks right."""
    fix = "re-download the checkpoint (or remove the broken file)"
    idx = d / INDEX_FILE
    if idx.is_file():
        try:
            total = index_total_size(json.loads(idx.read_text()), str(idx))
        except OSError:
            total = None
        except RecursionError:
            raise SpecError(field, f"{idx} nests too deeply", fix) from None
        except ValueError as e:
            raise SpecError(field, str(e), fix) from None
        if total:
            return total
    files = sorted(d.glob("*.safetensors"))
    if not files:
        return None
    total = 0
    for f in files:
        try:
            total += safetensors_tensor_bytes(f)
        except OSError:
            return None  # an incomplete download (cache symlink to a missing blob): size unknown
        except ValueError as e:
            raise SpecError(field, str(e), fix) from None
    return total


def _read_json(p: Path, field: str) -> dict[str, Any]:
    fix = f"re-download the model's {p.name}"  # config.json, hf_quant_config.json or preprocessor_config.json
    try:
        data = json.loads(p.read_text())
    except RecursionError:
        raise SpecError(field, f"{p} nests too deeply", fix) from None
    except ValueError as e:
        raise SpecError(field, f"{p} is not valid JSON ({e})", fix) from None
    if not isinstance(data, dict):
        raise SpecError(field, f"{p} is not a JSON object", fix)
    return data


def _facts_from_files(d: Path, *, model_id: str, source: str, field: str) -> ModelFacts:
    cfg = _read_json(d / "config.json", field)
    hqc = d / "hf_quant_config.json"
    pre = d / "preprocessor_config.json"  # the processor's largest image (memory/vision.py)
    return facts_from_config(
        cfg,
        model_id=model_id,
        source=source,
        checkpoint_bytes=checkpoint_bytes_in_dir(d, field),
        field=field,
        hf_quant_config=_read_json(hqc, field) if hqc.is_file() else None,
        preprocessor=_read_json(pre, field) if pre.is_file() else None,
    )


def facts_from_local_dir(path: str | Path, *, field: str = "model") -> ModelFacts:
    d = Path(path).expanduser()
    if not (d / "config.json").is_file():
        raise SpecError(
            field,
            f"{d} has no config.json",
            "point model at a Hugging Face-format checkpoint directory (config.json + *.safetensors)",
        )
    return _facts_from_files(d, model_id=str(d), source="local", field=field)


# --------------------------------------------------------------------------------------------
# Hugging Face cache


def hub_cache_dirs(hf_cache: str | None = None) -> list[Path]:
    """Candidate hub cache directories, most specific first."""
    out: list[Path] = []
    if os.environ.get("HF_HUB_CACHE"):
        out.append(Path(os.environ["HF_HUB_CACHE"]).expanduser())
    if hf_cache:
        base = Path(hf_cache).expanduser()
        out += [base / "hub", base]  # spec's hf_cache is HF_HOME-like; accept the hub dir itself too
    if os.environ.get("HF_HOME"):
        out.append(Path(os.environ["HF_HOME"]).expanduser() / "hub")
    out.append(Path("~/.cache/huggingface/hub").expanduser())
    seen: list[Path] = []
    for p in out:
        if p not in seen:
            seen.append(p)
    return seen


def find_cached_snapshot(
    repo_id: str, revision: str | None = None, hf_cache: str | None = None
) -> Path | None:
    """The snapshot directory holding config.json for repo_id@revision (refs/main by default)."""
    folder = "models--" + repo_id.replace("/", "--")
    dirs = [c / folder for c in hub_cache_dirs(hf_cache)]
    if not any((d / "snapshots").is_dir() for d in dirs):
        return None  # cheap miss: no import of huggingface_hub
    _hub_endpoint()  # huggingface_hub reads HF_ENDPOINT on import
    from huggingface_hub import try_to_load_from_cache

    for cache_dir in hub_cache_dirs(hf_cache):
        if not (cache_dir / folder / "snapshots").is_dir():
            continue
        hit = try_to_load_from_cache(repo_id, "config.json", cache_dir=cache_dir, revision=revision)
        if isinstance(hit, str):
            return Path(hit).parent
    return None


# --------------------------------------------------------------------------------------------
# Hub


def _hub_endpoint() -> str | None:
    """HF_ENDPOINT, or None for the default Hub. Checked before huggingface_hub is imported: its
    constants module splits the URL at import and raises ValueError on one like 'http://[bad'."""
    from urllib.parse import urlsplit

    raw = os.environ.get("HF_ENDPOINT")
    if not raw:
        return None
    try:
        parts = urlsplit(raw)
        ok = parts.scheme in ("http", "https") and bool(parts.hostname) and not any(c.isspace() for c in raw)
    except ValueError:
        ok = False
    if not ok:
        raise SpecError(
            "HF_ENDPOINT",
            f"HF_ENDPOINT={raw[:80]!r} is not an http(s) URL",
            "set it to the Hub or mirror URL (e.g. https://huggingface.co), or unset it",
        )
    return raw.rstrip("/")


def facts_from_hub(repo_id: str, revision: str | None, hf_cache: str | None, *, field: str) -> ModelFacts:
    """config.json + checkpoint size from the Hub (HF_ENDPOINT), downloading no weights."""
    endpoint = _hub_endpoint()
    token = os.environ.get("HF_TOKEN") or None
    cache_dir = next(iter(hub_cache_dirs(hf_cache)), None)
    kw: dict[str, Any] = {"revision": revision, "endpoint": endpoint, "token": token, "cache_dir": cache_dir}
    with _hub_deadline(HUB_TOTAL_S, endpoint or HUB_URL) as budget:
        _probe(endpoint or HUB_URL, budget)
        cfg = _hub_config(repo_id, kw, field)
        size = _hub_checkpoint_bytes(repo_id, kw)
        pre = _hub_preprocessor(repo_id, kw, field) if "vision_config" in cfg else None
    return facts_from_config(
        cfg, model_id=repo_id, source="hub", checkpoint_bytes=size, field=field, preprocessor=pre
    )


@contextmanager
def _hub_deadline(total_s: float, endpoint: str) -> Iterator[Budget]:
    """huggingface_hub's requests under one Budget: its shared client comes from our factory (deadline
    transport of the httpx flavour it uses, through the environment's proxy for the endpoint) for the
    duration; the previous factory is restored after.

    The factory is process-global: resolves must stay one at a time (plan resolves its models in turn), and a
    program embedding residency should not make its own Hub calls from other threads while one runs."""
    from huggingface_hub.utils import _http as hf_http

    from residency.deadline import Budget, deadline_transport, env_proxy

    mod = getattr(hf_http, "httpx2", None) or getattr(hf_http, "httpx")  # noqa: B009 - 1.x: httpx, 2.x: httpx2
    budget = Budget(total_s)
    hook = getattr(hf_http, "hf_request_event_hook", None)

    def factory() -> Any:
        return mod.Client(
            event_hooks={"request": [hook]} if hook else None,
            follow_redirects=True,
            timeout=None,
            transport=deadline_transport(mod, budget, proxy=env_proxy(endpoint)),
        )

    before = getattr(hf_http, "_GLOBAL_CLIENT_FACTORY", hf_http.default_client_factory)
    hf_http.set_client_factory(factory)
    try:
        yield budget
    finally:
        hf_http.set_client_factory(before)


def _hub_config(repo_id: str, kw: dict[str, Any], field: str) -> dict[str, Any]:
    import huggingface_hub as hh
    from huggingface_hub import errors as hf_errors

    try:
        cfg_path = hh.hf_hub_download(repo_id, "config.json", etag_timeout=HUB_TIMEOUT_S, **kw)
    except hf_errors.GatedRepoError:
        raise SpecError(
            field,
            f"{repo_id} is a gated repository and the Hub refused config.json",
            "accept its licence on the Hub and set HF_TOKEN, or give the facts by hand",
        ) from None
    except (hf_errors.RepositoryNotFoundError, hf_errors.RevisionNotFoundError) as e:
        raise _NotFound(f"the Hub has no such repository or revision ({type(e).__name__})") from None
    except hf_errors.RemoteEntryNotFoundError:
        raise _NotFound("the Hub repository has no config.json") from None
    except Exception as e:  # network down, proxy refused, timeout, offline mode, our total deadline
        raise _NotFound(
            f"the Hub could not be reached ({type(e).__name__}: {(str(e).splitlines() or [''])[0][:120]})"
        ) from None
    return _read_json(Path(cfg_path), field)


def _hub_preprocessor(repo_id: str, kw: dict[str, Any], field: str) -> dict[str, Any] | None:
    """preprocessor_config.json (the largest image vLLM profiles with), or None: the processor default."""
    import huggingface_hub as hh

    try:
        p = hh.hf_hub_download(repo_id, "preprocessor_config.json", etag_timeout=HUB_TIMEOUT_S, **kw)
    except Exception:
        return None
    return _read_json(Path(p), field)


def _probe(endpoint: str, budget: Budget) -> None:
    """One quick request before huggingface_hub, whose HEAD retries a refused connection 5 times
    with backoff (~25 s). Any HTTP answer means reachable; honours proxy variables like the Hub client."""
    import httpx

    from residency.deadline import DeadlineExceeded, deadline_transport, env_proxy

    try:
        transport = deadline_transport(httpx, budget, proxy=env_proxy(endpoint))
        with httpx.Client(timeout=HUB_TIMEOUT_S, transport=transport) as c:
            c.head(endpoint)
    except (httpx.HTTPError, DeadlineExceeded) as e:
        raise _NotFound(f"the Hub at {endpoint} could not be reached ({type(e).__name__})") from None
    except (ValueError, httpx.InvalidURL) as e:  # HTTP(S)_PROXY/ALL_PROXY that httpx cannot use
        raise _NotFound(f"the Hub at {endpoint} could not be reached: {str(e)[:120]}") from None


def _hub_checkpoint_bytes(repo_id: str, kw: dict[str, Any]) -> int | None:
    """Index metadata.total_size (one small file), else the single file's header via
    get_safetensors_metadata (HEAD + one ranged GET). None if neither is available."""
    import huggingface_hub as hh
    from huggingface_hub import errors as hf_errors

    try:
        idx = hh.hf_hub_download(repo_id, INDEX_FILE, etag_timeout=HUB_TIMEOUT_S, **kw)
        total = index_total_size(json.loads(Path(idx).read_text()), f"{repo_id}/{INDEX_FILE}")
        if total:
            return total
    except hf_errors.RemoteEntryNotFoundError:
        pass
    except Exception:
        return None
    try:
        api = hh.HfApi(endpoint=kw["endpoint"], token=kw["token"])
        meta = api.get_safetensors_metadata(repo_id, revision=kw["revision"], timeout=HUB_TIMEOUT_S)
    except Exception:
        return None
    total = 0
    for fm in meta.files_metadata.values():
        for t in fm.tensors.values():
            a, b = t.data_offsets
            if not 0 <= a <= b <= MAX_BYTES:
                return None  # a malformed remote header: size unknown rather than a wrong one
            total += b - a
    return total or None


def clear_cache() -> None:
    """Forget resolved facts (tests; long-running watchers after a model download)."""
    _resolve_cached.cache_clear()


__all__ = [
    "UnknownModelError",
    "checkpoint_bytes_in_dir",
    "clear_cache",
    "facts_from_hub",
    "facts_from_local_dir",
    "find_cached_snapshot",
    "hub_cache_dirs",
    "resolve_model",
    "safetensors_tensor_bytes",
]
