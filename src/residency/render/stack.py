"""Everything `residency render` writes, from one spec and its plan."""

from __future__ import annotations

from pathlib import Path

from residency.errors import PlanDoesNotFitError, SpecError
from residency.planner.result import Plan
from residency.render.common import Member, members, service_name
from residency.render.writer import RenderedFile, env_file, new_master_key, read_env_value
from residency.spec import StackSpec


def plan_for(spec: StackSpec) -> Plan:
    """The plan `render` and `up` work from (the planner engineer's `plan_stack`)."""
    from residency.planner.plan import plan_stack

    return plan_stack(spec)


def require_fit(plan: Plan, allow_at_risk: bool = False) -> None:
    """Refuse a plan with a failing model. `allow_at_risk`: `up` on the box itself, which reads the real
    free memory before each engine, may start a fraction the offline idle-Spark assumption calls at risk."""
    ok = ("ok", "at_risk") if allow_at_risk else ("ok",)
    bad = [m for m in plan.models if m.verdict not in ok]
    if bad or not (plan.fits or allow_at_risk):  # bad empty: every verdict is in ok already
        parts = []
        for m in bad:
            if m.error is not None:
                parts.append(f"{m.name}: {m.error.kind}: {m.error.message} (fix: {m.error.fix})")
            else:
                parts.append(f"{m.name}: does not fit")
        detail = "; ".join(parts) or "the models do not fit the device together"
        raise PlanDoesNotFitError(
            f"the plan does not fit, so nothing was rendered or started: {detail}. See `residency plan`"
        )


def check_names(mems: list[Member]) -> None:
    seen: dict[str, str] = {}
    for m in mems:  # names are validated at spec load ('litellm' is reserved there); this catches the
        s = service_name(m.key)  # collisions service_name's truncation and digit prefix can still make
        if s in seen:
            raise SpecError(
                f"models[{m.spec.name}].name",
                f"renders to the same service name {s!r} as model {seen[s]!r}",
                "make model names differ in more than case or punctuation",
            )
        seen[s] = m.key


def render_files(
    spec: StackSpec,
    plan: Plan,
    out_dir: Path,
    *,
    spec_dir: Path | None = None,
    rotate_key: bool = False,
    key: str | None = None,
    measured: dict | None = None,
) -> dict[str, RenderedFile]:
    from residency.render.compose import api_bases, compose_yaml
    from residency.render.k8s import render_k8s
    from residency.render.litellm import litellm_yaml

    mems = members(spec, plan)
    check_names(mems)
    key_env = spec.proxy.master_key_env
    if key is None:
        key = None if rotate_key else read_env_value(out_dir / ".env", key_env)
        key = key or new_master_key()
    lite = litellm_yaml(spec, mems, api_bases(spec, mems))
    # Kubernetes reaches each vLLM through its Service, whatever the compose network mode
    lite_k8s = litellm_yaml(spec, mems, api_bases(spec, mems, network="bridge"))
    files = {
        "compose.yaml": RenderedFile(compose_yaml(spec, mems, spec_dir)),
        "litellm.yaml": RenderedFile(lite),
        ".env": env_file(key_env, key),
    }
    files.update(agent_rendered_files(spec, mems, measured))
    for rel, text in render_k8s(spec, mems, lite_k8s, gpu_count=plan.device.count, spec_dir=spec_dir).items():
        files[f"k8s/{rel}"] = RenderedFile(text)
    return files


def agent_rendered_files(
    spec: StackSpec, mems: list[Member], measured: dict | None = None
) -> dict[str, RenderedFile]:
    from residency.render.agents import agent_files

    return {
        rel: RenderedFile(text, mode=0o755 if rel.endswith(".sh") else 0o644)
        for rel, text in agent_files(spec, mems, measured).items()
    }
