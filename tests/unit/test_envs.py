"""The conda environments: valid match specs, the right channels, versions as in requirements.txt.

Conda itself cannot run here (no conda channels), so this checks what can be checked.
"""

import re

import pytest
import yaml
from rattler import MatchSpec

from conftest import REPO

ENVS = sorted((REPO / "envs").glob("*.yaml"))
#: conda-forge names of packages that PyPI names differently.
PYPI_NAME = {"pytorch": "torch", "matplotlib-base": "matplotlib"}


def requirements() -> dict:
    pins = {}
    for line in (REPO / "requirements.txt").read_text().splitlines():
        line = line.split("#")[0].strip()
        if line:
            name, version = line.split("==")
            pins[name.lower()] = version
    return pins


def test_envs_exist_and_every_rule_uses_one():
    assert {p.stem for p in ENVS} == {"scanpy", "train", "figures"}
    for smk in (REPO / "workflow" / "rules").glob("*.smk"):
        text = smk.read_text()
        for path in re.findall(r'conda:\s*\n\s*"([^"]+)"', text):
            assert (smk.parent / path).resolve() in {p.resolve() for p in ENVS}, (smk.name, path)


@pytest.mark.parametrize("env", ENVS, ids=lambda p: p.stem)
def test_env_specs(env):
    spec = yaml.safe_load(env.read_text())
    assert spec["channels"] == ["conda-forge", "bioconda", "nodefaults"]
    pins = requirements()
    for dep in spec["dependencies"]:
        match = MatchSpec(dep)
        name = match.name.normalized
        assert match.version is not None, f"{env.name}: {dep} is not pinned"
        pypi = PYPI_NAME.get(name, name)
        if pypi in pins:
            assert str(match.version).lstrip("=").removesuffix(".*") == pins[pypi], (env.name, dep, pins[pypi])


def test_training_env_requires_a_cuda_build():
    deps = [MatchSpec(d) for d in yaml.safe_load((REPO / "envs" / "train.yaml").read_text())["dependencies"]]
    torch = next(d for d in deps if d.name.normalized == "pytorch")
    assert str(torch.build).startswith("cuda")
    assert any(d.name.normalized == "cuda-version" for d in deps)
