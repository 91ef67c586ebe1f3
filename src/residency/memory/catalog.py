"""The bundled model catalog: config.json + checkpoint size of well-known models, shipped in the wheel.

Data lives in `residency/catalog/models/<org>--<name>.json` (copied from the shared model survey),
shape `{"id", "config", "total_size_bytes", "sources", "notes", "extra"}`. `config` is either the
checkpoint's raw config.json or a transformers rendering of it (`dtype` instead of `torch_dtype`,
`rope_parameters`, `layer_types`, Qwen3-MoE `num_local_experts`), or a trimmed architecture subset;
`extra.config_status` says which. `config_facts.facts_from_config` reads all of these forms.

Lookup is by Hugging Face id, case-insensitive, or by an alias: the bare repo name
("Qwen3-4B-Instruct-2507") and the file stem ("Qwen--Qwen3-4B-Instruct-2507").
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from functools import cache
from importlib import resources
from importlib.resources.abc import Traversable
from typing import Any

# Config keys the survey's trimmed copies dropped but vLLM reads; each one is stated by the
# entry's own notes (or the published config). Applied on top of the bundled config.
_PATCHES: dict[str, dict[str, Any]] = {
    # Trimmed kvfit copy drops num_nextn_predict_layers; the notes say the checkpoint carries one
    # MTP layer (GLM-4.5-Air config.json: "num_nextn_predict_layers": 1).
    # Its q/k/v projections carry biases ("attention_bias": true), also dropped by the trim.
    "zai-org/GLM-4.5-Air": {
        "num_nextn_predict_layers": 1,
        "attention_bias": True,
        "architectures": ["Glm4MoeForCausalLM"],
    },
    # Trimmed copies without `architectures`; names from the notes.
    "mistralai/Mistral-Small-3.2-24B-Instruct-2506": {"architectures": ["Mistral3ForConditionalGeneration"]},
    "google/gemma-3-4b-it": {"architectures": ["Gemma3ForConditionalGeneration"]},
    "ibm-granite/granite-4.0-h-small": {"architectures": ["GraniteMoeHybridForCausalLM"]},
    "nvidia/NVIDIA-Nemotron-Nano-9B-v2": {"architectures": ["NemotronHForCausalLM"]},
    "tiiuae/Falcon-H1-7B-Instruct": {"architectures": ["FalconH1ForCausalLM"]},
    "microsoft/phi-4": {"architectures": ["Phi3ForCausalLM"]},
    "mistralai/Mistral-7B-Instruct-v0.3": {"architectures": ["MistralForCausalLM"]},
}

# Trimmed text-only copies of multimodal checkpoints (the vision tower is in the checkpoint).
_MULTIMODAL = {"mistralai/Mistral-Small-3.2-24B-Instruct-2506", "google/gemma-3-4b-it"}


@dataclass(frozen=True)
class CatalogEntry:
    id: str
    config: dict[str, Any]
    total_size_bytes: int | None
    notes: str = ""
    extra: dict[str, Any] = field(default_factory=dict)
    multimodal: bool = False

    @property
    def param_count(self) -> int | None:
        for k in ("param_count", "hf_param_count"):
            v = self.extra.get(k)
            if isinstance(v, int):
                return v
        return None

    @property
    def dtype(self) -> str | None:
        v = self.extra.get("dtype")
        return v if isinstance(v, str) else None

    @property
    def hf_quant_config(self) -> dict[str, Any] | None:
        v = self.extra.get("hf_quant_config")
        return v if isinstance(v, dict) else None

    @property
    def preprocessor_config(self) -> dict[str, Any] | None:
        """The processor's image size facts (preprocessor_config.json keys), where the entry has them."""
        v = self.extra.get("preprocessor_config")
        return v if isinstance(v, dict) else None


def _models_dir() -> Traversable:
    return resources.files("residency.catalog").joinpath("models")


@cache
def _index() -> dict[str, str]:
    """lower-cased id / alias -> file name."""
    idx: dict[str, str] = {}
    aliases: dict[str, list[str]] = {}
    for f in _models_dir().iterdir():
        name = f.name
        if not name.endswith(".json"):
            continue
        stem = name[: -len(".json")]
        org, _, repo = stem.partition("--")
        hf_id = f"{org}/{repo}"
        idx[hf_id.lower()] = name
        idx[stem.lower()] = name
        aliases.setdefault(repo.lower(), []).append(name)
    for alias, names in aliases.items():
        if len(names) == 1:  # bare repo name only when unambiguous
            idx.setdefault(alias, names[0])
    return idx


def catalog_ids() -> list[str]:
    """Every bundled Hugging Face id, sorted."""
    return sorted({_load(n).id for n in set(_index().values())}, key=str.lower)


@cache
def _load(file_name: str) -> CatalogEntry:
    raw = json.loads(_models_dir().joinpath(file_name).read_text())
    cfg = dict(raw["config"])
    cfg.update(_PATCHES.get(raw["id"], {}))
    return CatalogEntry(
        id=raw["id"],
        config=cfg,
        total_size_bytes=raw.get("total_size_bytes"),
        notes=raw.get("notes") or "",
        extra=raw.get("extra") or {},
        multimodal=raw["id"] in _MULTIMODAL,
    )


def lookup(model: str) -> CatalogEntry | None:
    """The catalog entry for an HF id (case-insensitive) or alias, else None."""
    key = model.strip().lower()
    name = _index().get(key)
    if name is None and key.startswith("hf://"):
        name = _index().get(key[5:])
    return _load(name) if name else None


def suggest(model: str, n: int = 3) -> list[str]:
    """Closest catalog ids to a misspelt reference (for error messages)."""
    import difflib

    ids = catalog_ids()
    lowered = {i.lower(): i for i in ids}
    hits = difflib.get_close_matches(model.lower(), list(lowered), n=n, cutoff=0.5)
    if not hits:
        repo = model.lower().rsplit("/", 1)[-1]
        short = {i.lower().rsplit("/", 1)[-1]: i.lower() for i in ids}
        hits = [short[h] for h in difflib.get_close_matches(repo, list(short), n=n, cutoff=0.5)]
    return [lowered[h] for h in hits]
