"""The conda environments: valid match specs, the right channels, versions as in requirements.txt.

Conda itself cannot run here (no conda channels), so this checks what can be checked;
tests/integration/test_conda_envs.py runs the workflow in the envs, built by the fake
conda whose translation of conda names and versions to pip's is tested here.
"""

import re
import sys

import pytest
import yaml
from rattler import MatchSpec

from conftest import REPO

sys.path.insert(0, str(REPO / "tests" / "integration" / "conda_shim"))
from fake_conda import env_requirements, pypi_requirement  # noqa: E402

ENVS = sorted((REPO / "envs").glob("*.yaml"))


def requirements() -> dict:
    pins = {}
    for line in (REPO / "requirements.txt").read_text().splitlines():
        line = line.split("#")[0].strip()
        if line:
            name, version = line.split("==")
            pins[name.lower()] = version
    return pins


def test_envs_exist_and_every_rule_uses_one():
    assert {p.stem for p in ENVS} == {"scanpy", "train", "figures", "scib", "ivae_reference", "scvi"}
    for smk in (REPO / "workflow" / "rules").glob("*.smk"):
        text = smk.read_text()
        for path in re.findall(r'conda:\s*\n\s*"([^"]+)"', text):
            assert (smk.parent / path).resolve() in {p.resolve() for p in ENVS}, (smk.name, path)


@pytest.mark.parametrize("env", ENVS, ids=lambda p: p.stem)
def test_env_specs(env):
    """Every package is pinned; each one pip would install, at the version requirements.txt pins."""
    spec = yaml.safe_load(env.read_text())
    assert spec["channels"] == ["conda-forge", "bioconda", "nodefaults"]
    pins = requirements()
    for dep in spec["dependencies"]:
        if isinstance(dep, dict):  # a pip section: PyPI names, pinned as in requirements.txt
            assert set(dep) == {"pip"}, (env.name, dep)
            for requirement in dep["pip"]:
                name, version = requirement.split("==")
                assert pins.get(name.lower()) == version, (env.name, requirement, pins.get(name.lower()))
            continue
        match = MatchSpec(dep)
        assert match.version is not None, f"{env.name}: {dep} is not pinned"
        requirement = pypi_requirement(dep)
        if requirement is None:  # python, pip, cuda-version
            continue
        pypi, version = requirement.split("==")
        conda_version = str(match.version).lstrip("=").removesuffix(".*")
        assert version.removesuffix(".*") == conda_version, (env.name, dep, requirement)  # read as rattler does
        assert pins.get(pypi) == conda_version, (env.name, dep, pins.get(pypi))


@pytest.mark.parametrize(("spec", "requirement"), [
    ("numpy=2.4.6", "numpy==2.4.6.*"),  # conda's `=` matches 2.4.6 and 2.4.6.x
    ("numpy==2.4.6", "numpy==2.4.6"),
    ("numpy=2.4.*", "numpy==2.4.*"),
    ("scanpy", "scanpy"),
    ("conda-forge::scanpy=1.11.5", "scanpy==1.11.5.*"),
    ("pytorch=2.13.0=cuda*", "torch==2.13.0.*"),  # the build string has no PyPI counterpart
    ("python-igraph=1.0.0", "igraph==1.0.0.*"),
    ("matplotlib-base=3.11.2", "matplotlib==3.11.2.*"),
    ("Scikit-Learn=1.9.1", "scikit-learn==1.9.1.*"),
    ("python=3.12", None),
    ("pip=25.3", None),
    ("cuda-version=12.9", None),
])
def test_fake_conda_pypi_requirement(spec, requirement):
    assert pypi_requirement(spec) == requirement


@pytest.mark.parametrize("spec", ["numpy>=2", "numpy 2.4.6", "numpy=2.4.6=*=x", {"pip": ["scanpy"]}])
def test_fake_conda_rejects_what_it_cannot_translate(spec):
    with pytest.raises(ValueError, match="unsupported match spec"):
        pypi_requirement(spec)


def test_fake_conda_reads_a_pip_section():
    assert env_requirements(["numpy=2.4.6", "pip=25.3", {"pip": ["iVAE==0.0.5"]}]) == ["numpy==2.4.6.*", "iVAE==0.0.5"]
    with pytest.raises(ValueError, match="pip section of pinned names"):
        env_requirements([{"pip": ["iVAE"]}])


def test_training_env_requires_a_cuda_build():
    deps = [MatchSpec(d) for d in yaml.safe_load((REPO / "envs" / "train.yaml").read_text())["dependencies"]]
    torch = next(d for d in deps if d.name.normalized == "pytorch")
    assert str(torch.build).startswith("cuda")
    assert any(d.name.normalized == "cuda-version" for d in deps)
