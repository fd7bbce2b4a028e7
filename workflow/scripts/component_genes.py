"""What each component means in genes: results/{dataset}/component_genes.tsv.

For every latent component (``X_ivae``, the posterior mean) and every interpretative
component (``X_ivae_interp``), two readings over the modelled (highly variable) genes:

- ``correlation``: Pearson r across cells between the component and each gene's
  log-normalised expression: the genes whose expression follows it;
- ``log2fc``: what the decoder does when only that component moves: the decoded expression
  with the component at its 90th percentile over cells against its 10th, every other
  component at its median (latent components: z; interpretative components: the i_dim
  code, then latent_decoder, then the decoder), as log2((10^4 p_high + 1) / (10^4 p_low + 1))
  of the decoded proportions p: the fold change of expected counts per 10,000 with a
  pseudocount of 1, so that barely expressed genes do not dominate with huge ratios of
  tiny numbers. A model with covariates is decoded at each covariate's most frequent
  category.

One row per (space, component, gene), with both readings and the gene's rank by each
(1 = largest absolute value within the component).

Atlas scale: above ``evaluation.max_cells`` cells the correlations are still over every
cell, but the log-normalised matrix is read a block of rows at a time and its sums
accumulated (``blockwise_correlation``), so memory does not grow with the cells.
"""

import numpy as np
import pandas as pd
import scipy.sparse as sp
import torch

from checkpoint import load_checkpoint
from covariates import covariate_codes
from h5ad_parts import iter_row_blocks, matrix_shape, read_lognorm, read_obs
from rule_io import atomic_path, log, setup_logging

#: Percentiles of a component between which the decoder's response is read.
LOW, HIGH = 10, 90
#: Counts per cell at which proportions are compared (with a pseudocount of 1), as in
#: the log-normalisation's target_sum.
PER = 1e4


def expression_correlation(values: np.ndarray, X) -> np.ndarray:
    """Pearson r (components x genes) between the columns of ``values`` (cells x
    components) and of ``X`` (cells x genes, dense or sparse), from sums: X is never
    centred or densified. A constant gene or component gives NaN."""
    v = np.asarray(values, dtype=np.float64)
    n = v.shape[0]
    X = sp.csr_matrix(X, dtype=np.float64) if sp.issparse(X) else np.asarray(X, dtype=np.float64)
    sum_x = np.asarray(X.sum(0)).ravel()
    sum_xx = np.asarray(X.multiply(X).sum(0)).ravel() if sp.issparse(X) else (X * X).sum(0)
    cross = np.asarray((X.T @ v).T)  # components x genes: sum over cells of v * x
    sum_v, sum_vv = v.sum(0), (v * v).sum(0)
    numerator = n * cross - np.outer(sum_v, sum_x)
    with np.errstate(invalid="ignore", divide="ignore"):
        return numerator / np.sqrt(np.outer(n * sum_vv - sum_v**2, n * sum_xx - sum_x**2))


def blockwise_correlation(values: dict[str, np.ndarray], blocks) -> dict[str, np.ndarray]:
    """``expression_correlation`` of each array of ``values`` (cells x components) with a
    matrix given as ``(first row, block)`` pairs covering its rows in order (e.g.
    ``h5ad_parts.iter_row_blocks``), read once; the same Pearson r from sums accumulated
    block by block (float64), for matrices too large to hold."""
    v = {name: np.asarray(a, dtype=np.float64) for name, a in values.items()}
    n, sum_x, sum_xx, cross = 0, 0.0, 0.0, dict.fromkeys(v, 0.0)
    for start, block in blocks:
        block = sp.csr_matrix(block, dtype=np.float64) if sp.issparse(block) else np.asarray(block, np.float64)
        stop = start + block.shape[0]
        n += block.shape[0]
        sum_x = sum_x + np.asarray(block.sum(0)).ravel()
        sum_xx = sum_xx + (np.asarray(block.multiply(block).sum(0)).ravel() if sp.issparse(block)
                           else (block * block).sum(0))
        for name, a in v.items():
            cross[name] = cross[name] + np.asarray((block.T @ a[start:stop]).T)
    out = {}
    for name, a in v.items():
        if a.shape[0] != n:
            raise ValueError(f"{name} has {a.shape[0]} rows but the matrix has {n}.")
        sum_v, sum_vv = a.sum(0), (a * a).sum(0)
        with np.errstate(invalid="ignore", divide="ignore"):
            out[name] = (n * cross[name] - np.outer(sum_v, sum_x)) / np.sqrt(
                np.outer(n * sum_vv - sum_v**2, n * sum_xx - sum_x**2))
    return out


@torch.no_grad()
def decoder_response(model, latent: np.ndarray, interp: np.ndarray, covariates: torch.Tensor | None = None):
    """(latent log2fc: latent_dim x genes, interpretative log2fc: i_dim x genes) as in the module doc."""
    model.eval()

    def proportions(z: torch.Tensor) -> torch.Tensor:
        onehot = None if covariates is None else model.one_hot(covariates.expand(len(z), -1))
        return model.generative(z, torch.ones(len(z), 1), onehot)["proportions"]

    def vary(values: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
        """Points at the median, with one component at its 10th and at its 90th percentile."""
        base = np.median(values, axis=0)
        low, high = np.tile(base, (values.shape[1], 1)), np.tile(base, (values.shape[1], 1))
        k = np.arange(values.shape[1])
        low[k, k], high[k, k] = np.percentile(values, LOW, axis=0), np.percentile(values, HIGH, axis=0)
        return torch.as_tensor(low, dtype=torch.float32), torch.as_tensor(high, dtype=torch.float32)

    def log2fc(high: torch.Tensor, low: torch.Tensor) -> np.ndarray:
        return torch.log2((PER * proportions(high) + 1) / (PER * proportions(low) + 1)).numpy()

    z_low, z_high = vary(latent)
    le_low, le_high = vary(interp)
    return log2fc(z_high, z_low), log2fc(model.latent_decoder(le_high), model.latent_decoder(le_low))


def component_table(genes, correlations: dict, log2fcs: dict) -> pd.DataFrame:
    """Long table: space, component (1-based), gene, correlation, log2fc and the ranks."""
    frames = []
    for space in correlations:
        for k, (r, fc) in enumerate(zip(correlations[space], log2fcs[space]), start=1):
            frame = pd.DataFrame({"space": space, "component": k, "gene": list(map(str, genes)),
                                  "correlation": r, "log2fc": fc})
            # a gene constant across cells has no correlation (NaN): ranked last
            frame["rank_correlation"] = frame["correlation"].abs().rank(ascending=False, method="first",
                                                                        na_option="bottom")
            frame["rank_log2fc"] = frame["log2fc"].abs().rank(ascending=False, method="first", na_option="bottom")
            frames.append(frame)
    table = pd.concat(frames, ignore_index=True)
    return table.astype({"rank_correlation": int, "rank_log2fc": int})


def main(snakemake) -> None:
    import anndata as ad

    setup_logging(snakemake.log[0])
    torch.set_num_threads(snakemake.threads)
    n_cells = matrix_shape(snakemake.input.data)[0]
    blockwise = n_cells > int(snakemake.params.max_cells)
    if blockwise:
        X, obs = None, read_obs(snakemake.input.data)
        log.info("%d cells, above max_cells %d: correlations over every cell, the matrix read a block at a time",
                 n_cells, snakemake.params.max_cells)
    else:
        X, obs = read_lognorm(snakemake.input.data)
    emb = ad.read_h5ad(snakemake.input.embedding)
    model, ckpt = load_checkpoint(snakemake.input.model)
    latent, interp = np.asarray(emb.obsm["X_ivae"]), np.asarray(emb.obsm["X_ivae_interp"])
    covariates = ckpt.get("covariates", {"keys": [], "categories": []})
    codes, _ = covariate_codes(obs, covariates["keys"], covariates["categories"], what=snakemake.input.data)
    modal = None if codes is None else torch.as_tensor(
        [np.bincount(column).argmax() for column in codes.T], dtype=torch.long)[None, :]
    latent_fc, interp_fc = decoder_response(model, latent, interp, modal)
    if blockwise:
        correlations = blockwise_correlation({"latent": latent, "interpretative": interp},
                                             iter_row_blocks(snakemake.input.data))
    else:
        correlations = {"latent": expression_correlation(latent, X), "interpretative": expression_correlation(interp, X)}
    table = component_table(ckpt["gene_names"], correlations, {"latent": latent_fc, "interpretative": interp_fc})
    top = table[table["rank_log2fc"] <= 3].groupby(["space", "component"])["gene"].apply(", ".join)
    log.info("top genes by decoder response:\n%s", top.to_string())
    with atomic_path(snakemake.output[0]) as tmp:
        table.to_csv(tmp, sep="\t", index=False)


if "snakemake" in globals():
    main(snakemake)  # noqa: F821
