"""The software versions a step ran with (software_versions.tsv)."""

def software_versions(packages) -> dict:
    """Python and the versions of the given packages, as installed where this runs."""
    import platform
    from importlib.metadata import PackageNotFoundError, version

    found = {"python": platform.python_version()}
    for name in packages:
        try:
            found[name] = version(name)
        except PackageNotFoundError:
            found[name] = "not installed"
    return found
