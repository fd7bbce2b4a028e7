"""Loss terms of the iVAE, each a small function with its maths in the docstring.

Every term returns a per-batch mean (a scalar tensor) unless its name says otherwise.
Unit tests check them against ``torch.distributions`` and hand-computed values.
"""


import math
from dataclasses import dataclass

import torch


#: Guards log(0) in the negative-binomial likelihood, as in scVI.
EPS = 1e-8

#: Names of the logged loss terms, in the order of the training log's columns.
LOSS_TERMS = ("loss", "recon", "irecon", "kl", "dip", "tc", "mmd")


def log_nb(x: torch.Tensor, mu: torch.Tensor, theta: torch.Tensor, eps: float = EPS) -> torch.Tensor:
    """Element-wise negative-binomial log-likelihood, mean/inverse-dispersion form.

    log NB(x; mu, theta) = theta (log theta - log(theta + mu))
                         + x (log mu - log(theta + mu))
                         + lgamma(x + theta) - lgamma(theta) - lgamma(x + 1)

    x: counts; mu > 0: expected counts; theta > 0: inverse dispersion
    (variance = mu + mu^2 / theta). ``eps`` keeps the logs finite when mu -> 0.
    """
    log_theta_mu = torch.log(theta + mu + eps)
    return (
        theta * (torch.log(theta + eps) - log_theta_mu)
        + x * (torch.log(mu + eps) - log_theta_mu)
        + torch.lgamma(x + theta)
        - torch.lgamma(theta)
        - torch.lgamma(x + 1)
    )


def nb_reconstruction_loss(counts: torch.Tensor, mu: torch.Tensor, log_theta: torch.Tensor) -> torch.Tensor:
    """-E_batch[sum_genes log NB(counts; mu, exp(log_theta))].

    ``mu`` is the model's expected counts: the decoder's proportions (cells x genes, rows
    sum to 1) times each cell's library size (its total count over the modelled genes).
    """
    return -log_nb(counts, mu, torch.exp(log_theta)).sum(-1).mean()


def nb_count_terms(counts: torch.Tensor, theta: torch.Tensor, sparse: bool = False) -> torch.Tensor:
    """Per cell, sum_genes [lgamma(x + theta) - lgamma(theta) - lgamma(x + 1)]: the part of
    log NB that depends on the counts and theta but not on the mean.

    Every gene with x = 0 adds lgamma(theta) - lgamma(theta) - lgamma(1) = 0 exactly, so
    with ``sparse`` only the non-zero counts are evaluated (scRNA-seq batches are ~90 %
    zeros): the lgamma and, in the backward pass, digamma calls over every gene were a third
    of a compiled CPU training step. Both forms give the same value up to float rounding.
    ``fit`` uses the sparse form where the counts are held sparse on the CPU (atlases);
    runs whose counts fit densely keep the dense sum, so their published results are
    unchanged, and on CUDA finding the non-zeros would synchronise with the host and break
    the step's CUDA graph.
    """
    if sparse:
        return _sparse_count_terms(counts, theta)
    return (torch.lgamma(counts + theta) - torch.lgamma(counts + 1)).sum(-1) - torch.lgamma(theta).sum()


@torch.compiler.disable  # data-dependent shapes: run eagerly between the compiled parts of a step
def _sparse_count_terms(counts: torch.Tensor, theta: torch.Tensor) -> torch.Tensor:
    cells, genes = counts.nonzero(as_tuple=True)
    x, t = counts[cells, genes], theta[genes]
    terms = torch.lgamma(x + t) - torch.lgamma(t) - torch.lgamma(x + 1)
    return counts.new_zeros(counts.shape[0]).index_add(0, cells, terms.to(counts.dtype))


def nb_reconstruction_losses(counts, mus: list, log_theta, sparse: bool = False) -> list:
    """``[nb_reconstruction_loss(counts, mu, log_theta) for mu in mus]``, sharing the work
    that does not depend on the mean.

    log NB = [lgamma(x + theta) - lgamma(theta) - lgamma(x + 1) + theta log theta]
             - theta log(theta + mu) + x (log mu - log(theta + mu))
    The bracket depends on the counts and theta only, so the iVAE's two reconstructions
    (pred_x and pred_xl: same counts, same theta) compute its lgamma terms once, and only
    at the non-zero counts with ``sparse`` (``nb_count_terms``).
    """
    theta = torch.exp(log_theta)
    shared = nb_count_terms(counts, theta, sparse) + (theta * torch.log(theta + EPS)).sum()
    losses = []
    for mu in mus:
        log_theta_mu = torch.log(theta + mu + EPS)
        per_cell = (counts * (torch.log(mu + EPS) - log_theta_mu) - theta * log_theta_mu).sum(-1)
        losses.append(-(shared + per_cell).mean())
    return losses


def kl_normal_standard(q_m: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
    """E_batch[KL(N(q_m, scale^2) || N(0, I))], summed over latent components.

    KL = sum_d ( -log s_d + (s_d^2 + m_d^2) / 2 - 1/2 ).
    ``scale`` must be the standard deviation the encoder actually sampled with.
    """
    kl = -torch.log(scale) + 0.5 * (scale.square() + q_m.square()) - 0.5
    return kl.sum(-1).mean()


def dip_vae_ii_penalty(q_m: torch.Tensor, scale: torch.Tensor, lambda_offdiag: float = 1.0,
                       lambda_diag: float = 1.0) -> torch.Tensor:
    """DIP-VAE-II regulariser (Kumar et al. 2018, eq. 6 with Cov_q(z)).

    Cov_q(z) = Cov_batch[q_m] + E_batch[diag(scale^2)]
    penalty  = lambda_od * sum_{i != j} C_ij^2 + lambda_d * sum_i (C_ii - 1)^2
    """
    centred = q_m - q_m.mean(0, keepdim=True)
    cov = centred.T @ centred / max(q_m.shape[0] - 1, 1)
    cov = cov + torch.diag(scale.square().mean(0))
    diag = torch.diagonal(cov)
    off = cov - torch.diag(diag)
    return lambda_offdiag * off.square().sum() + lambda_diag * (diag - 1).square().sum()


def total_correlation(q_z: torch.Tensor, q_m: torch.Tensor, scale: torch.Tensor, n_cells: int) -> torch.Tensor:
    """Total correlation KL(q(z) || prod_d q(z_d)) by minibatch-weighted sampling.

    β-TC-VAE (Chen et al. 2018), with M the batch size and N the number of cells:
        log q(z_i)     ~= logsumexp_j log q(z_i | x_j)              - log(N M)
        log q(z_{i,d}) ~= logsumexp_j log q(z_{i,d} | x_j)          - log(N M)
        TC ~= mean_i [ log q(z_i) - sum_d log q(z_{i,d}) ]
    """
    m = q_z.shape[0]
    # log N(z_i,d ; m_j,d, s_j,d) for every pair (i, j): shape (M, M, D)
    diff = (q_z.unsqueeze(1) - q_m.unsqueeze(0)) / scale.unsqueeze(0)
    log_density = -0.5 * diff.square() - torch.log(scale.unsqueeze(0)) - 0.5 * math.log(2 * math.pi)
    log_nm = math.log(n_cells * m)
    log_qz = torch.logsumexp(log_density.sum(2), dim=1) - log_nm
    log_qz_marginals = (torch.logsumexp(log_density, dim=1) - log_nm).sum(1)
    return (log_qz - log_qz_marginals).mean()


def rbf_kernel(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """k(a, b) = exp(-||a - b||^2 / (2 D)), D the number of latent components."""
    return torch.exp(-torch.cdist(a, b).square() / (2.0 * a.shape[1]))


def mmd(q_z: torch.Tensor, prior_z: torch.Tensor) -> torch.Tensor:
    """Unbiased squared maximum mean discrepancy with an RBF kernel (InfoVAE).

    MMD^2 = mean_{i != j} k(p_i, p_j) + mean_{i != j} k(q_i, q_j) - 2 mean_{i, j} k(p_i, q_j)
    """
    def mean_offdiag(k: torch.Tensor) -> torch.Tensor:
        n = k.shape[0]
        return (k.sum() - torch.diagonal(k).sum()) / (n * (n - 1))

    return (
        mean_offdiag(rbf_kernel(prior_z, prior_z))
        + mean_offdiag(rbf_kernel(q_z, q_z))
        - 2 * rbf_kernel(prior_z, q_z).mean()
    )


@dataclass(frozen=True)
class LossWeights:
    """Weights of the loss terms; the reconstruction of pred_x always has weight 1."""

    beta: float = 1.0
    irecon: float = 1.0
    dip: float = 0.0
    tc: float = 0.0
    info: float = 0.0


def ivae_loss(model, counts: torch.Tensor, weights: LossWeights, n_cells: int,
              covariates: torch.Tensor | None = None, sparse_likelihood: bool = False) -> dict[str, torch.Tensor]:
    """All loss terms for one batch of raw counts; ``loss`` is the weighted sum.

    ``model.inference`` encodes log1p(counts) (and the covariates' codes); both
    reconstructions (from q_z, and from the latent after the interpretative module) are
    scored by the NB likelihood of the raw counts with each cell's total count as library
    size, decoded in one pass. Terms whose weight is 0 are not computed and reported as 0
    (with irecon = 0 the module's reconstruction is not even decoded). Logged terms are
    weighted as they enter ``loss``. ``sparse_likelihood``: evaluate the lgamma terms at the
    non-zero counts only (``nb_count_terms``).
    """
    inf = model.inference(counts, covariates)
    q_z, q_m, scale, library = inf["q_z"], inf["q_m"], inf["scale"], inf["library"]
    zero = counts.new_zeros(())
    latents = [q_z, inf["ld"]] if weights.irecon else [q_z]
    onehot = inf["covariates"]
    gen = model.generative(torch.cat(latents), library.repeat(len(latents), 1),
                           None if onehot is None else onehot.repeat(len(latents), 1))
    recons = nb_reconstruction_losses(counts, list(gen["mu"].split(counts.shape[0])), gen["log_theta"],
                                      sparse=sparse_likelihood)
    terms = {"recon": recons[0], "irecon": weights.irecon * recons[1] if weights.irecon else zero}
    terms["kl"] = weights.beta * kl_normal_standard(q_m, scale) if weights.beta else zero
    terms["dip"] = weights.dip * dip_vae_ii_penalty(q_m, scale) if weights.dip else zero
    terms["tc"] = weights.tc * total_correlation(q_z, q_m, scale, n_cells) if weights.tc else zero
    terms["mmd"] = weights.info * mmd(q_z, torch.randn_like(q_z)) if weights.info else zero
    terms["loss"] = sum(terms.values())
    return terms


def log_importance_weights(model, counts: torch.Tensor, n_samples: int,
                           covariates: torch.Tensor | None = None) -> torch.Tensor:
    """log w_k = log p(x | z_k) + log p(z_k) - log q(z_k | x) for ``n_samples`` draws z_k of
    q(z | x) per cell (samples x cells): the NB likelihood of the raw counts from z (each
    cell's total count as library size, as in training), the standard-normal prior and the
    encoder's posterior with the scale it samples with. Call in eval mode, without gradients.
    """
    inf = model.inference(counts, covariates)
    q_m, scale = inf["q_m"], inf["scale"]
    z = q_m + scale * torch.randn((n_samples, *q_m.shape), dtype=q_m.dtype, device=q_m.device)
    log_q = (-0.5 * ((z - q_m) / scale) ** 2 - torch.log(scale) - 0.5 * math.log(2 * math.pi)).sum(-1)
    log_prior = (-0.5 * z**2 - 0.5 * math.log(2 * math.pi)).sum(-1)
    onehot = inf["covariates"]
    n_cells = counts.shape[0]
    gen = model.generative(z.reshape(n_samples * n_cells, -1), inf["library"].repeat(n_samples, 1),
                           None if onehot is None else onehot.repeat(n_samples, 1))
    theta = torch.exp(gen["log_theta"])
    log_px = log_nb(counts.repeat(n_samples, 1), gen["mu"], theta).sum(-1).reshape(n_samples, n_cells)
    return log_px + log_prior - log_q


def held_out_bounds(log_weights: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Per cell, from K importance weights (samples x cells): the negative ELBO,
    -(1/K) sum_k log w_k, and the importance-weighted bound's negative,
    -log((1/K) sum_k w_k) (Burda et al. 2016), which is never above it (Jensen) and
    approaches -log p(x) as K grows."""
    k = log_weights.shape[0]
    nelbo = -log_weights.mean(0)
    iwae = -(torch.logsumexp(log_weights, 0) - math.log(k))
    return nelbo, iwae
