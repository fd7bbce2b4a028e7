"""A fake `conda` for tests: `snakemake --use-conda` without conda channels.

Answers exactly the calls of Snakemake 9's deployment/conda.py for file-based envs:

- ``conda --version``: a version Snakemake accepts;
- ``conda info --json``: ``conda_prefix`` (this folder, whose ``bin/activate`` Snakemake
  sources before each job) and ``platform``;
- ``conda config --get channel_priority --json``: strict, as conda users usually set it;
- ``conda env create --file F --prefix P``: a virtualenv at P holding the env file's
  packages at the env file's versions, installed by pip, which resolves their
  dependencies as conda would;
- ``conda clean -y --tarballs`` (after each creation; Snakemake's default
  --conda-cleanup-pkgs): nothing, as pip keeps no package tarballs in the env.

Anything else (``env export``, ``list --explicit``: named envs and ``--archive`` only) is
an error, so an unexpected call fails the test instead of passing silently. When
``CONDA_SHIM_LOG`` is set, each env created and each Python script run in one is
recorded there, one JSON object per line.
"""

import argparse
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import yaml

#: Snakemake 9.27.1's minimum conda version (MIN_CONDA_VER).
VERSION = "24.7.1"
#: The fake root prefix: Snakemake sources ROOT/bin/activate in every job.
ROOT = Path(__file__).resolve().parent
#: conda-forge names of packages that PyPI names differently.
PYPI_NAME = {"pytorch": "torch", "python-igraph": "igraph", "matplotlib-base": "matplotlib"}
#: conda packages that pip does not install into a virtualenv.
NOT_FROM_PYPI = {
    # A virtualenv runs the interpreter it was made from: the env's Python version cannot
    # be matched, so the env gets this interpreter's (the same one Snakemake runs on).
    "python",
    # Nothing runs pip inside an env; the shim's own pip fills it.
    "pip",
    # A virtual package that selects conda-forge's CUDA builds of pytorch. Its stand-in is
    # the torch wheel pip finds: a CPU one where pip's configuration offers it (find-links,
    # or PIP_EXTRA_INDEX_URL=https://download.pytorch.org/whl/cpu).
    "cuda-version",
}
#: A conda match spec as the env files write it: [channel::]name[=version[=build]] or name==version.
MATCH_SPEC = re.compile(r"^(?:[\w.-]+::)?(?P<name>[A-Za-z0-9_.-]+)(?:(?P<op>==?)(?P<version>[^=\s]+)(?:=[^=\s]+)?)?$")

#: Imported at start-up of every Python of an env made here (through a .pth file): records
#: which interpreter ran which script, so that a test can tell where each rule ran.
PROBE = '''\
"""Written by tests/integration/conda_shim/fake_conda.py: records scripts run in this env."""
import json
import os
import sys

if os.environ.get("CONDA_SHIM_LOG") and sys.argv and sys.argv[0].endswith(".py"):
    with open(os.environ["CONDA_SHIM_LOG"], "a") as _fh:
        _fh.write(json.dumps({"event": "run", "script": sys.argv[0], "executable": sys.executable,
                              "prefix": sys.prefix}) + "\\n")
'''


def pypi_requirement(spec: str) -> str | None:
    """The pip requirement for one conda dependency, or None where pip installs nothing.

    Conda's ``name=1.2`` matches 1.2 and 1.2.x (``==1.2.*`` for pip), ``name==1.2`` only
    1.2. A build string (``pytorch=2.13.0=cuda*``) has no PyPI counterpart and is dropped.
    Raises ValueError for a spec this shim does not understand.
    """
    match = MATCH_SPEC.match(spec.strip()) if isinstance(spec, str) else None  # e.g. a `pip:` section
    if not match:
        raise ValueError(f"fake conda: unsupported match spec {spec!r}")
    name, op, version = match["name"].lower(), match["op"], match["version"]
    if name in NOT_FROM_PYPI:
        return None
    name = PYPI_NAME.get(name, name)
    if version is None:
        return name
    if op == "=" and not version.endswith("*"):
        version += ".*"
    return f"{name}=={version}"


def env_requirements(dependencies: list) -> list[str]:
    """pip requirements of an env file's dependencies: each conda spec translated
    (pypi_requirement), and the entries of a ``pip:`` section as they are (conda installs
    those with pip too). Each one must be pinned with ``==``."""
    requirements = []
    for dep in dependencies:
        if isinstance(dep, dict):
            if set(dep) != {"pip"} or not all(isinstance(r, str) and "==" in r for r in dep["pip"]):
                raise ValueError(f"fake conda: unsupported dependency {dep!r} (a pip section of pinned names only)")
            requirements += dep["pip"]
        elif (requirement := pypi_requirement(dep)):
            requirements.append(requirement)
    return requirements


def record(event: dict) -> None:
    """Append ``event`` to the log named by CONDA_SHIM_LOG, if any."""
    if os.environ.get("CONDA_SHIM_LOG"):
        with open(os.environ["CONDA_SHIM_LOG"], "a") as fh:
            fh.write(json.dumps(event) + "\n")


def run(cmd: list[str]) -> None:
    """Run ``cmd``; its output goes to Snakemake, which shows it if creation fails."""
    print("+", " ".join(cmd), flush=True)
    result = subprocess.run(cmd)
    if result.returncode:
        sys.exit(f"fake conda: {cmd[0]} failed with exit status {result.returncode}")


def create_env(env_file: Path, prefix: Path) -> None:
    """Make ``prefix`` a virtualenv holding the packages of the env file ``env_file``."""
    spec = yaml.safe_load(env_file.read_text())
    requirements = env_requirements(spec["dependencies"])
    # venv builds on the base interpreter even when run from a virtualenv, so the env holds
    # only what pip installs below, never this interpreter's packages. This interpreter's
    # pip installs into it (--python), which spares making a pip in every env.
    run([sys.executable, "-m", "venv", "--without-pip", str(prefix)])
    python = str(prefix / "bin" / "python")
    run([sys.executable, "-m", "pip", "--python", python, "install", "--no-compile", "--disable-pip-version-check",
         *requirements])
    site_packages = subprocess.run([python, "-c", "import sysconfig; print(sysconfig.get_path('purelib'))"],
                                   capture_output=True, text=True, check=True).stdout.strip()
    (Path(site_packages) / "conda_shim_probe.py").write_text(PROBE)
    (Path(site_packages) / "conda_shim_probe.pth").write_text("import conda_shim_probe\n")
    record({"event": "create", "prefix": str(prefix), "file": str(env_file), "requirements": requirements})


def parser() -> argparse.ArgumentParser:
    """The command line of the calls Snakemake makes, and nothing more."""
    cli = argparse.ArgumentParser(prog="conda", description=__doc__.splitlines()[0])
    cli.add_argument("--version", action="version", version=f"conda {VERSION}")
    commands = cli.add_subparsers(dest="command", required=True)
    info = commands.add_parser("info")
    info.add_argument("--json", action="store_true", required=True)
    config = commands.add_parser("config")
    config.add_argument("--get", choices=["channel_priority"], required=True)
    config.add_argument("--json", action="store_true", required=True)
    env = commands.add_parser("env").add_subparsers(dest="env_command", required=True)
    create = env.add_parser("create")
    create.add_argument("--file", type=Path, required=True)
    create.add_argument("--prefix", type=Path, required=True)
    create.add_argument("--quiet", action="store_true")
    create.add_argument("--no-default-packages", action="store_true")
    clean = commands.add_parser("clean")
    clean.add_argument("-y", "--yes", action="store_true", required=True)
    clean.add_argument("--tarballs", action="store_true", required=True)
    clean.add_argument("--packages", action="store_true")
    return cli


def main(argv: list[str]) -> None:
    args = parser().parse_args(argv)
    if args.command == "info":
        print(json.dumps({"conda_prefix": str(ROOT), "root_prefix": str(ROOT), "platform": "linux-64",
                          "conda_version": VERSION}))
    elif args.command == "config":
        print(json.dumps({"get": {"channel_priority": "strict"}, "rc_path": None}))
    elif args.command == "env":
        create_env(args.file, args.prefix)
    # `clean` has nothing to do: pip leaves no package tarballs in the env.


if __name__ == "__main__":
    main(sys.argv[1:])
