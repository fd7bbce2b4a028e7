"""The iVAE networks: how tensors flow, nothing else.

Modules and state_dict keys follow the reference package (`iVAE` 0.0.5, MIT) so that
checkpoints stay comparable: ``encoder.nn.*``, ``decoder.nn.*``, ``decoder.disp``,
``latent_encoder.*`` and ``latent_decoder.*``. Argument names are the field's:
``n_genes`` (the reference's ``state_dim``) and ``latent_dim`` (its ``action_dim``).

The interface is scvi-tools' (``scvi.module.VAE``): ``inference(counts, covariates)`` and
``generative(z, library, covariates)`` return dicts, and the input transform (log1p) and
the library size live here, so that the loss, the trainer and embedding extraction never
repeat them. ``forward(x)`` still returns the reference's seven outputs.

Categorical covariates (e.g. the sample of each cell) enter as one-hot columns beside the
input of every hidden layer, of the encoder and of the decoder, as scVI does by default
(``deeply_inject_covariates``); not beside the output layers. Without covariates the
networks, their weights at a given seed and their outputs are exactly the reference's.

Losses live in ``losses.py`` and the training loop in ``train.py``.
"""

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

#: Added to the softplus scale so that the posterior never collapses to a point.
MIN_SCALE = 1e-6


@dataclass(frozen=True)
class ModelSettings:
    """The config's ``model`` section (hidden_dim, latent_dim, i_dim), plus what the data
    fix: ``n_genes`` and ``n_categories``, the number of categories of each covariate."""

    n_genes: int
    hidden_dim: int
    latent_dim: int
    i_dim: int
    n_categories: tuple[int, ...] = ()
    stop_gradient: bool = False


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


#: Indices, in the encoder's and the decoder's ``nn.Sequential``, of the layers that take
#: the one-hot covariates beside their input: the two hidden layers.
COVARIATE_LAYERS = (0, 2)


def _run(layers: nn.Sequential, h: torch.Tensor, covariates: torch.Tensor | None) -> torch.Tensor:
    """``layers`` on ``h``, the covariates concatenated to the input of COVARIATE_LAYERS."""
    if covariates is None:
        return layers(h)
    for i, layer in enumerate(layers):
        h = layer(torch.cat([h, covariates], dim=-1) if i in COVARIATE_LAYERS else h)
    return h


class Encoder(nn.Module):
    """q(z | x): log1p counts (and one-hot covariates) -> (sample q_z, mean q_m, raw scale q_s)."""

    def __init__(self, n_genes: int, hidden_dim: int, latent_dim: int, n_covariates: int = 0):
        super().__init__()
        self.latent_dim = latent_dim
        self.nn = nn.Sequential(
            nn.Linear(n_genes + n_covariates, hidden_dim),
            nn.ReLU(),
            nn.Linear(hidden_dim + n_covariates, hidden_dim),
            nn.ReLU(),
            nn.Linear(hidden_dim, latent_dim * 2),
        )
        self.apply(init_weights)

    def moments(self, x: torch.Tensor, covariates: torch.Tensor | None = None):
        """(q_m, q_s): the posterior mean and raw scale, without sampling."""
        out = _run(self.nn, x, covariates)
        return out[:, : self.latent_dim], out[:, self.latent_dim :]

    def forward(self, x: torch.Tensor, covariates: torch.Tensor | None = None):
        q_m, q_s = self.moments(x, covariates)
        # Reparameterised sample from Normal(q_m, softplus(q_s) + 1e-6), written out so
        # that no Distribution object (and its argument validation) is built per step.
        q_z = q_m + posterior_scale(q_s) * torch.randn_like(q_m)
        return q_z, q_m, q_s


class Decoder(nn.Module):
    """p(x | z): latent (and one-hot covariates) -> expression proportions over genes (rows sum to 1).

    ``disp`` holds the per-gene log inverse dispersion: theta = exp(disp).
    """

    def __init__(self, n_genes: int, hidden_dim: int, latent_dim: int, n_covariates: int = 0):
        super().__init__()
        self.nn = nn.Sequential(
            nn.Linear(latent_dim + n_covariates, hidden_dim),
            nn.ReLU(),
            nn.Linear(hidden_dim + n_covariates, hidden_dim),
            nn.ReLU(),
            nn.Linear(hidden_dim, n_genes),
            nn.Softmax(dim=-1),
        )
        self.disp = nn.Parameter(torch.randn(n_genes))
        self.apply(init_weights)

    def forward(self, z: torch.Tensor, covariates: torch.Tensor | None = None) -> torch.Tensor:
        return _run(self.nn, z, covariates)


class IVAE(nn.Module):
    """The iVAE: a VAE plus the interpretative module. (Its controls are this network
    trained with other weights: the plain VAE is irecon = 0; methods.py.)

    The interpretative module compresses the sampled latent to ``i_dim`` components
    (``latent_encoder``) and expands it back (``latent_decoder``); the same decoder then
    reconstructs the cell from that bottlenecked latent (``pred_xl``).

    ``n_categories``: the number of categories of each categorical covariate (none by
    default); covariates are passed as integer codes, cells x covariates.
    """

    def __init__(self, n_genes: int, hidden_dim: int = 128, latent_dim: int = 10, i_dim: int = 2,
                 n_categories: tuple[int, ...] = (), stop_gradient: bool = False):
        super().__init__()
        if min(n_genes, hidden_dim, latent_dim, i_dim) < 1:
            raise ValueError(
                f"all dimensions must be positive, got n_genes={n_genes}, "
                f"hidden_dim={hidden_dim}, latent_dim={latent_dim}, i_dim={i_dim}"
            )
        if i_dim >= latent_dim:
            raise ValueError(f"i_dim ({i_dim}) must be smaller than latent_dim ({latent_dim})")
        if any(n < 1 for n in n_categories):
            raise ValueError(f"every covariate needs at least one category, got {tuple(n_categories)}")
        self.n_categories = tuple(int(n) for n in n_categories)
        n_covariates = sum(self.n_categories)
        self.encoder = Encoder(n_genes, hidden_dim, latent_dim, n_covariates)
        self.decoder = Decoder(n_genes, hidden_dim, latent_dim, n_covariates)
        # The module's initial weights come from the same stream as the seed model's, after
        # the encoder's and decoder's; the stream is then put back, so that what is drawn
        # later (sampling, and anything else drawn from torch's default generator) does not
        # depend on i_dim: a model that does not use the module trains the same at any width.
        stream = torch.random.get_rng_state()
        self.latent_encoder = nn.Linear(latent_dim, i_dim)
        self.latent_decoder = nn.Linear(i_dim, latent_dim)
        torch.random.set_rng_state(stream)
        #: The module sees z with its gradient stopped: it cannot shape z (a control).
        self.stop_gradient = bool(stop_gradient)

    @classmethod
    def from_settings(cls, settings: ModelSettings) -> "IVAE":
        return cls(settings.n_genes, settings.hidden_dim, settings.latent_dim, settings.i_dim, settings.n_categories,
                   settings.stop_gradient)

    def one_hot(self, codes: torch.Tensor | None) -> torch.Tensor | None:
        """Integer covariate codes (cells x covariates) -> concatenated one-hot columns."""
        if not self.n_categories:
            return None
        if codes is None or codes.shape[-1] != len(self.n_categories):
            raise ValueError(f"the model has {len(self.n_categories)} covariate(s): pass their codes, "
                             f"cells x {len(self.n_categories)}")
        return torch.cat([F.one_hot(codes[:, i].long(), n).to(torch.float32)
                          for i, n in enumerate(self.n_categories)], dim=-1)

    def interpret(self, z: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(le, ld): the i_dim interpretative embedding of ``z`` and the latent it decodes to.
        With ``stop_gradient`` the module sees ``z`` detached: the reconstruction through it
        trains the module and the decoder, never the encoder."""
        le = self.latent_encoder(z.detach() if self.stop_gradient else z)
        return le, self.latent_decoder(le)

    def inference(self, counts: torch.Tensor, covariates: torch.Tensor | None = None) -> dict:
        """q(z | counts): ``q_m``, ``q_s`` (raw scale), ``scale`` (the std sampled with),
        a sample ``q_z``, its interpretative embedding ``le`` and decoded latent ``ld``,
        ``library`` (each cell's total count) and the one-hot ``covariates``."""
        library = counts.sum(-1, keepdim=True)
        onehot = self.one_hot(covariates)
        q_z, q_m, q_s = self.encoder(torch.log1p(counts), onehot)
        le, ld = self.interpret(q_z)
        return {"q_m": q_m, "q_s": q_s, "scale": posterior_scale(q_s), "q_z": q_z, "le": le, "ld": ld,
                "library": library, "covariates": onehot}

    def generative(self, z: torch.Tensor, library: torch.Tensor, covariates: torch.Tensor | None = None) -> dict:
        """p(counts | z): ``proportions`` (softmax over genes), ``mu`` = proportions x
        library, and ``log_theta`` (per-gene log inverse dispersion). ``covariates`` are
        the one-hot columns ``inference`` returns."""
        proportions = self.decoder(z, covariates)
        return {"proportions": proportions, "mu": proportions * library, "log_theta": self.decoder.disp}

    def forward(self, x: torch.Tensor, covariates: torch.Tensor | None = None):
        """The reference's outputs ``q_z, q_m, q_s, pred_x, le, ld, pred_xl`` for log1p
        counts ``x`` (and covariate codes)."""
        onehot = self.one_hot(covariates)
        q_z, q_m, q_s = self.encoder(x, onehot)
        le, ld = self.interpret(q_z)
        # One decoder pass over both latents: half the kernel launches, larger matmuls.
        both = None if onehot is None else torch.cat([onehot, onehot])
        pred_x, pred_xl = self.decoder(torch.cat([q_z, ld]), both).split(x.shape[0])
        return q_z, q_m, q_s, pred_x, le, ld, pred_xl

    @torch.no_grad()
    def embed(self, counts: torch.Tensor, covariates: torch.Tensor | None = None):
        """Deterministic embeddings of raw counts from the posterior mean.

        Returns ``(q_m, le, ld)``: the latent mean, its i_dim interpretative embedding and
        the latent after the interpretative module. Call in eval mode.
        """
        q_m, _ = self.encoder.moments(torch.log1p(counts), self.one_hot(covariates))
        le, ld = self.interpret(q_m)
        return q_m, le, ld


#: The seed's name for the iVAE network, kept importable for users' code and checkpoints
#: (the state_dict keys are the attributes' names, the same under either name).
VAE = IVAE
