"""`components` rule: what the components mean, for every model that has components.

Models: each trained model's posterior-mean latent z (the iVAE and its controls, scVI,
LDVAE), the iVAE's interpretative embedding, LDVAE's loadings (its linear decoder's
weights, genes x components: the gene programs its authors read), the PCA/ICA/NMF/FA baselines with latent_dim components
(refitted here on every cell, one fit per training seed), and a null: random projections
of the log-normalised genes (each component a Gaussian combination of the genes), which
gives what chance gives.

- **Stability across seeds**: for each pair of training seeds, the components of one
  matched to those of the other by the Hungarian method on |r| (Pearson, across cells),
  and the median matched |r|; per model, the median over seed pairs.
- **Gene-set enrichment**: each component's genes ranked by their Pearson r with it across
  cells (component_genes.expression_correlation, log-normalised expression of the highly
  variable genes), or for LDVAE's loadings by the loadings themselves (their stability:
  matched |r| across genes); the TOP genes of each tail (positive and negative: a component's sign
  is arbitrary) tested against every MSigDB Hallmark set (hypergeometric, universe: the
  highly variable genes that have a name in the collection's namespace; sets with at
  least MIN_SET_SIZE genes in it); Benjamini-Hochberg over every test of one model and
  seed. A component is enriched when one of its tails has a set at FDR < FDR. Mouse genes
  are matched by their upper-cased symbol (Cd3e -> CD3E: the orthologue for most genes,
  not all). A dataset without gene names (gene_1, ...) gets no enrichment, and says so.

Above ``evaluation.max_cells`` cells everything runs on a seeded uniform subsample of that
many cells.
"""

import numpy as np
import pandas as pd

from component_genes import expression_correlation
from h5ad_parts import matrix_shape, read_lognorm, read_obsm, read_rows, read_var_names
from rule_io import InputError, atomic_path, log, setup_logging
from subsample import subsample_cells

#: Genes of each tail of a component tested for enrichment.
TOP = 50
#: Benjamini-Hochberg false discovery rate at which a component counts as enriched.
FDR = 0.05
#: Gene sets with fewer genes among the tested ones are left out.
MIN_SET_SIZE = 5
#: The null model's name.
RANDOM = "random projection"


def read_gmt(path) -> dict[str, set[str]]:
    """A .gmt file: one set per line, name, description, genes (tab-separated)."""
    sets = {}
    for line in open(path, encoding="utf-8"):
        fields = line.rstrip("\n").split("\t")
        if len(fields) > 2:
            sets[fields[0]] = {g for g in fields[2:] if g}
    if not sets:
        raise InputError(f"{path}: no gene set in it.")
    return sets


def matched_abs_r(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """|r| of the components of ``a`` matched one to one with those of ``b`` (cells x k each,
    the same cells) by the Hungarian method maximising the summed |r|."""
    from scipy.optimize import linear_sum_assignment

    k = a.shape[1]
    r = np.corrcoef(a, b, rowvar=False)[:k, k:]
    r = np.nan_to_num(np.abs(r))
    rows, cols = linear_sum_assignment(-r)
    return r[rows, cols]


def stability(embeddings: dict[int, np.ndarray]) -> pd.DataFrame:
    """Per pair of seeds (seed -> cells x k): the median and mean matched |r|."""
    seeds = sorted(embeddings)
    rows = []
    for i, a in enumerate(seeds):
        for b in seeds[i + 1:]:
            matched = matched_abs_r(embeddings[a], embeddings[b])
            rows.append({"seed_a": a, "seed_b": b, "median_matched_r": float(np.median(matched)),
                         "mean_matched_r": float(matched.mean())})
    return pd.DataFrame(rows, columns=["seed_a", "seed_b", "median_matched_r", "mean_matched_r"])


def gene_namespace(genes) -> tuple[np.ndarray, str]:
    """Gene names as the collection spells them (human symbols, upper case) and how they
    were mapped: ``as is`` (human-like), ``upper-cased mouse symbols`` (mostly lower
    case), or ``none`` (no gene names: gene_1, ...)."""
    genes = pd.Index(map(str, genes))
    if genes.str.fullmatch(r"gene_\d+").mean() > 0.5:
        return np.array([""] * len(genes)), "none"
    letters = genes[genes.str.contains("[A-Za-z]")]
    mouse = len(letters) and (letters.str[1:] != letters.str[1:].str.upper()).mean() > 0.5
    return genes.str.upper().to_numpy(), "upper-cased mouse symbols" if mouse else "as is"


def enrichment(corr: np.ndarray, genes: np.ndarray, gene_sets: dict[str, set[str]], *, top: int = TOP,
               min_set_size: int = MIN_SET_SIZE) -> pd.DataFrame:
    """Hypergeometric enrichment of each component's top genes (``corr``: components x
    genes, Pearson r; ``genes``: their names in the collection's namespace, "" unnamed),
    both tails, against ``gene_sets``; BH over every test. One row per component and tail:
    its best set, overlap, p and q."""
    from scipy.stats import false_discovery_control, hypergeom

    named = np.flatnonzero(genes != "")
    universe = set(genes[named])
    sets = {name: members & universe for name, members in gene_sets.items()}
    sets = {name: members for name, members in sets.items() if len(members) >= min_set_size}
    columns = ["component", "tail", "gene_set", "overlap", "set_size", "p", "q"]
    if not sets or not len(named):
        return pd.DataFrame(columns=columns)
    names = list(sets)
    member = np.array([[g in sets[n] for g in genes[named]] for n in names])  # sets x named genes
    tests = []
    for component in range(corr.shape[0]):
        r = corr[component, named]
        finite = np.isfinite(r)
        for tail, sign in (("+", 1.0), ("-", -1.0)):
            order = np.argsort(-sign * np.where(finite, r, -sign * np.inf), kind="stable")[:min(top, finite.sum())]
            overlap = member[:, order].sum(axis=1)
            p = hypergeom.sf(overlap - 1, len(named), member.sum(axis=1), len(order))
            tests += [(component, tail, names[s], int(overlap[s]), int(member[s].sum()), float(p[s]))
                      for s in range(len(names))]
    table = pd.DataFrame(tests, columns=columns[:-1])
    table["q"] = false_discovery_control(table["p"].to_numpy(), method="bh")
    best = table.sort_values(["component", "tail", "p"], kind="stable").groupby(["component", "tail"]).head(1)
    return best.reset_index(drop=True)[columns]


def random_projection(X: np.ndarray, k: int, seed: int) -> np.ndarray:
    """The null model: the gene-centred data times a Gaussian genes x k matrix."""
    rng = np.random.default_rng(seed)
    return (X - X.mean(axis=0)) @ rng.normal(size=(X.shape[1], k))


def enriched_fractions(enr: pd.DataFrame, k: int) -> pd.Series:
    """Per seed, the fraction of a model's ``k`` components with a tail enriched at FDR
    (``enr``: that model's rows of enrichment())."""
    if not len(enr):
        return pd.Series(dtype=float)
    return enr.groupby("seed").apply(lambda g: (g.groupby("component")["q"].min() < FDR).sum() / k,
                                     include_groups=False)


def summarise(stab: pd.DataFrame, enr: pd.DataFrame, n_components: dict[str, int]) -> pd.DataFrame:
    """Per model: the median (and quartiles) over seed pairs of the median matched |r|, and
    the fraction of components enriched at FDR: mean and s.d. over seeds."""
    rows = []
    for model, k in n_components.items():
        s = stab[stab["model"] == model]["median_matched_r"] if len(stab) else pd.Series(dtype=float)
        e = enr[enr["model"] == model] if len(enr) else enr
        fractions = enriched_fractions(e, k)
        rows.append({"model": model, "components": k, "seed_pairs": len(s),
                     "stability": s.median() if len(s) else np.nan,
                     "stability_q1": s.quantile(0.25) if len(s) else np.nan,
                     "stability_q3": s.quantile(0.75) if len(s) else np.nan,
                     "seeds": len(fractions), "enriched_fraction": fractions.mean() if len(fractions) else np.nan,
                     "enriched_fraction_sd": fractions.std(ddof=1) if len(fractions) > 1 else np.nan})
    return pd.DataFrame(rows)


def model_embeddings(runs: dict[tuple[str, int], str], X: np.ndarray, rows: np.ndarray | None,
                     n_components: int) -> dict[str, dict[int, np.ndarray]]:
    """Every model's components per seed: the trained models' z (and the iVAE's
    interpretative embedding) from their embedding files, the baselines refitted with the
    seed, the random projections."""
    from baselines import baseline_embeddings

    out: dict[str, dict[int, np.ndarray]] = {}
    seeds = sorted({seed for _, seed in runs})
    for (method, seed), path in runs.items():
        z = read_obsm(path, "X_ivae")
        if not np.isfinite(z).all():  # a standard model whose training diverged: no components
            log.warning("%s seed %d: its latent is not finite (training diverged); left out", method, seed)
            continue
        out.setdefault(f"{method} z", {})[seed] = z if rows is None else z[rows]
        if method == "iVAE":
            interp = read_obsm(path, "X_ivae_interp")
            out.setdefault("iVAE interpretative", {})[seed] = interp if rows is None else interp[rows]
    for seed in seeds:
        embeddings, _ = baseline_embeddings(X, n_components, seed=seed)
        for name, e in embeddings.items():
            out.setdefault(name, {})[seed] = e
        out.setdefault(RANDOM, {})[seed] = random_projection(X, n_components, seed)
    return out


def loadings_matrix(path, genes) -> np.ndarray:
    """An LDVAE run's loadings.tsv as genes x components, in the order of ``genes``."""
    long = pd.read_csv(path, sep="\t", dtype={"gene": str}, keep_default_na=False)
    wide = long.pivot(index="gene", columns="component", values="loading")
    missing = pd.Index(map(str, genes)).difference(wide.index)
    if len(missing):
        raise InputError(f"{path}: no loading for {len(missing)} of the data's genes (e.g. {list(missing[:3])}); "
                         "rerun the model.")
    return wide.loc[list(map(str, genes))].to_numpy(dtype=np.float64)


def main(snakemake) -> None:
    from threadpoolctl import threadpool_limits

    setup_logging(snakemake.log[0])
    params = snakemake.params
    runs = {(m, int(s)): path for (m, s), path in zip(params.runs, snakemake.input.embeddings, strict=True)}
    n_cells = matrix_shape(snakemake.input.data)[0]
    max_cells = params.max_cells
    rows = None
    if max_cells is not None and n_cells > max_cells:
        rows = subsample_cells(n_cells, int(max_cells), seed=int(params.eval_seed))
        X = read_rows(snakemake.input.data, rows)
        log.info("%d cells, above max_cells %d: components on a uniform subsample of %d", n_cells, max_cells, len(rows))
    else:
        X, _ = read_lognorm(snakemake.input.data)
    X = np.asarray(X.toarray() if hasattr(X, "toarray") else X, dtype=np.float32)
    genes, mapping = gene_namespace(read_var_names(snakemake.input.data))
    gene_sets = read_gmt(snakemake.input.gene_sets)
    log.info("genes matched to the gene sets: %s", mapping)
    with threadpool_limits(getattr(snakemake, "threads", None)):
        models = model_embeddings(runs, X, rows, int(params.n_components))
    var_names = read_var_names(snakemake.input.data)
    # gene readings (genes x components) instead of cell embeddings: enriched as they are
    # a diverged LDVAE run has no loadings (an empty table): left out like its latent
    readings = {"LDVAE loadings": {int(seed): loadings_matrix(path, var_names)
                                   for seed, path in zip(params.loadings_seeds, snakemake.input.loadings, strict=True)
                                   if len(pd.read_csv(path, sep="\t", usecols=[0]))}}
    readings = {name: per_seed for name, per_seed in readings.items() if per_seed}
    ordered = {}
    for name, per_seed in models.items():  # LDVAE's loadings right after its z
        ordered[name] = per_seed
        if name == "LDVAE z":
            ordered.update(readings)
    models = {**ordered, **readings}
    stab, enr = [], []
    for model, per_seed in models.items():
        stab.append(stability(per_seed).assign(model=model))
        if mapping == "none":
            continue
        for seed, e in per_seed.items():
            corr = e.T if model in readings else expression_correlation(e, X)
            enr.append(enrichment(corr, genes, gene_sets).assign(model=model, seed=seed))
    stab = pd.concat(stab, ignore_index=True)[["model", "seed_a", "seed_b", "median_matched_r", "mean_matched_r"]]
    enr = (pd.concat(enr, ignore_index=True)[["model", "seed", "component", "tail", "gene_set", "overlap", "set_size",
                                              "p", "q"]] if enr else pd.DataFrame(
        columns=["model", "seed", "component", "tail", "gene_set", "overlap", "set_size", "p", "q"]))
    summary = summarise(stab, enr, {m: next(iter(e.values())).shape[1] for m, e in models.items()})
    summary["gene_names"] = mapping
    log.info("\n%s", summary.round(3).to_string(index=False))
    for table, path in ((stab, snakemake.output.stability), (enr, snakemake.output.enrichment),
                        (summary, snakemake.output.summary)):
        with atomic_path(path) as tmp:
            table.to_csv(tmp, sep="\t", index=False)


if "snakemake" in globals():
    main(snakemake)  # noqa: F821
