"""FROZEN: workflow/scripts/model.py as it was before the scvi-tools-style interface (commit
381ef84), kept so that tests can check that the model's state_dict, initial weights and
forward() outputs are still exactly these. Do not edit.

The iVAE networks: how tensors flow, nothing else.

Modules and state_dict keys follow the reference package (`iVAE` 0.0.5, MIT) so that
checkpoints stay comparable: ``encoder.nn.*``, ``decoder.nn.*``, ``decoder.disp``,
``latent_encoder.*`` and ``latent_decoder.*``. Argument names are the field's:
``n_genes`` (the reference's ``state_dim``) and ``latent_dim`` (its ``action_dim``).

Losses live in ``losses.py`` and the training loop in ``train.py``.
"""


import torch
import torch.nn.functional as F
from torch import nn

#: Added to the softplus scale so that the posterior never collapses to a point.
MIN_SCALE = 1e-6


def init_weights(module: nn.Module) -> None:
    """Xavier-normal weights and a small positive bias for every linear layer."""
    if isinstance(module, nn.Linear):
        nn.init.xavier_normal_(module.weight)
        nn.init.constant_(module.bias, 0.01)


def posterior_scale(q_s: torch.Tensor) -> torch.Tensor:
    """Standard deviation of q(z | x) from the encoder's raw scale output.

    This is the scale the encoder samples with; the KL term must use the same one.
    """
    return F.softplus(q_s) + MIN_SCALE


class Encoder(nn.Module):
    """q(z | x): log1p counts -> (sample q_z, mean q_m, raw scale q_s)."""

    def __init__(self, n_genes: int, hidden_dim: int, latent_dim: int):
        super().__init__()
        self.latent_dim = latent_dim
        self.nn = nn.Sequential(
            nn.Linear(n_genes, hidden_dim),
            nn.ReLU(),
            nn.Linear(hidden_dim, hidden_dim),
            nn.ReLU(),
            nn.Linear(hidden_dim, latent_dim * 2),
        )
        self.apply(init_weights)

    def forward(self, x: torch.Tensor):
        out = self.nn(x)
        q_m, q_s = out[:, : self.latent_dim], out[:, self.latent_dim :]
        # Reparameterised sample from Normal(q_m, softplus(q_s) + 1e-6), written out so
        # that no Distribution object (and its argument validation) is built per step.
        q_z = q_m + posterior_scale(q_s) * torch.randn_like(q_m)
        return q_z, q_m, q_s


class Decoder(nn.Module):
    """p(x | z): latent -> expression proportions over genes (rows sum to 1).

    ``disp`` holds the per-gene log inverse dispersion: theta = exp(disp).
    """

    def __init__(self, n_genes: int, hidden_dim: int, latent_dim: int):
        super().__init__()
        self.nn = nn.Sequential(
            nn.Linear(latent_dim, hidden_dim),
            nn.ReLU(),
            nn.Linear(hidden_dim, hidden_dim),
            nn.ReLU(),
            nn.Linear(hidden_dim, n_genes),
            nn.Softmax(dim=-1),
        )
        self.disp = nn.Parameter(torch.randn(n_genes))
        self.apply(init_weights)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.nn(z)


class VAE(nn.Module):
    """The iVAE: a VAE plus the interpretative module.

    The interpretative module compresses the sampled latent to ``i_dim`` components
    (``latent_encoder``) and expands it back (``latent_decoder``); the same decoder then
    reconstructs the cell from that bottlenecked latent (``pred_xl``).

    forward(x) returns ``q_z, q_m, q_s, pred_x, le, ld, pred_xl``.
    """

    def __init__(self, n_genes: int, hidden_dim: int = 128, latent_dim: int = 10, i_dim: int = 2):
        super().__init__()
        if min(n_genes, hidden_dim, latent_dim, i_dim) < 1:
            raise ValueError(
                f"all dimensions must be positive, got n_genes={n_genes}, "
                f"hidden_dim={hidden_dim}, latent_dim={latent_dim}, i_dim={i_dim}"
            )
        if i_dim >= latent_dim:
            raise ValueError(f"i_dim ({i_dim}) must be smaller than latent_dim ({latent_dim})")
        self.encoder = Encoder(n_genes, hidden_dim, latent_dim)
        self.decoder = Decoder(n_genes, hidden_dim, latent_dim)
        self.latent_encoder = nn.Linear(latent_dim, i_dim)
        self.latent_decoder = nn.Linear(i_dim, latent_dim)

    def forward(self, x: torch.Tensor):
        q_z, q_m, q_s = self.encoder(x)
        le = self.latent_encoder(q_z)
        ld = self.latent_decoder(le)
        # One decoder pass over both latents: half the kernel launches, larger matmuls.
        pred_x, pred_xl = self.decoder(torch.cat([q_z, ld])).split(x.shape[0])
        return q_z, q_m, q_s, pred_x, le, ld, pred_xl

    @torch.no_grad()
    def embed(self, x: torch.Tensor):
        """Deterministic embeddings from the posterior mean.

        Returns ``(q_m, le, ld)``: the latent mean, its i_dim interpretative embedding and
        the latent after the interpretative module. Call in eval mode.
        """
        q_m = self.encoder.nn(x)[:, : self.encoder.latent_dim]
        le = self.latent_encoder(q_m)
        ld = self.latent_decoder(le)
        return q_m, le, ld
