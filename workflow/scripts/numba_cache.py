"""A numba cache for UMAP's compiled functions that works in read-only installs."""

def cache_umap_compilation() -> int:
    """Let numba keep umap-learn's compiled code on disk, so that later jobs reuse it.

    umap-learn declares its numba functions (the neighbour graph's fuzzy simplicial set,
    the layout optimiser) without ``cache=True``, so every process that builds a scanpy
    neighbour graph or a UMAP compiles them again: about 4.5 s of a 10 s job on 700
    cells, in every one of the several such jobs per dataset. This turns numba's cache on
    for them before first use (in umap's ``__pycache__``, or numba's per-user cache where
    that is read-only; ``NUMBA_CACHE_DIR`` moves it). The compiled code, and so every
    result, is the same. Returns how many functions it enabled (0 without umap-learn).
    """
    import importlib

    try:
        from numba.core.caching import NullCache
        from numba.core.dispatcher import Dispatcher
    except ImportError:
        return 0
    enabled = 0
    for name in ("umap.umap_", "umap.layouts", "umap.utils", "umap.spectral", "umap.distances", "umap.sparse"):
        try:
            module = importlib.import_module(name)
        except ImportError:
            continue
        for obj in vars(module).values():
            if isinstance(obj, Dispatcher) and isinstance(obj._cache, NullCache):
                obj.enable_caching()
                enabled += 1
    return enabled
