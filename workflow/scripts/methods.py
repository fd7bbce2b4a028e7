"""Every method the workflow compares, defined once: its role, colour and settings.

A *method* is one way of embedding the cells: a trained model (the iVAE and its
controls, the regularised VAEs of ``compare``, the settings of ``sweep``) or a linear
baseline. Rules (which models to train, with what settings), figures (colours, order)
and docs (labels) all read this module; adding a built-in method is one entry of
``BUILT_IN``, and a user adds one with an entry of config ``compare``.

Roles:

- ``model``: the iVAE, the method under study;
- ``control``: a model that differs from the iVAE in one thing, trained beside it in
  every run: ``VAE``, no interpretative loss; ``VAE-narrow``, a latent as narrow as the
  bottleneck; ``VAE-beta-matched``, no interpretative loss and the KL weighed as much
  against the reconstruction as in the iVAE's objective (β / (1 + irecon)), so that
  iVAE vs VAE-beta-matched isolates the module from the effective β; ``iVAE-stop-gradient``,
  the iVAE whose module sees z with its gradient stopped, so that the module cannot shape z
  and what remains is the extra decoder pass; ``iVAE-no-covariates``, the dataset's
  covariates left out;
- ``standard``: the field's standard models from scvi-tools, trained by their own rule
  (``train_standard``): ``scVI`` and ``LDVAE`` (linear decoder, loadings as gene programs);
- ``baseline``: a linear or matrix-factorisation embedding of the log-normalised data,
  fitted once per training seed (``baselines`` rule);
- ``compare``: the models of config ``compare`` (``snakemake compare``);
- ``sweep``: one setting changed, named ``key=value`` (``snakemake sweep``).

Standard library only: the rules import it (workflow/rules/common.smk) as well as the
scripts.
"""

import re
from dataclasses import dataclass, field
from typing import Callable

#: The main model: its run at ``train.seed`` is the dataset's model (adata.h5ad, figures).
MAIN = "iVAE"
#: The iVAE without the dataset's covariates: the control that shows what conditioning does.
NO_COVARIATES = "iVAE-no-covariates"
#: Okabe-Ito qualitative palette (colour-blind safe).
OKABE_ITO = ["#E69F00", "#56B4E9", "#009E73", "#F0E442", "#0072B2", "#D55E00", "#CC79A7", "#000000"]
#: More colours for methods beyond Okabe-Ito's: Paul Tol's muted scheme (colour-blind safe).
TOL_MUTED = ["#332288", "#88CCEE", "#44AA99", "#117733", "#999933", "#DDCC77", "#CC6677", "#882255", "#AA4499"]
#: Grey for every linear baseline.
BASELINE_GREY = "#9A9A9A"
#: A swept method: one setting changed, e.g. "irecon=0.5" or "i_dim=4".
SWEPT = re.compile(r"^(?P<key>[a-z_]+)=(?P<value>[0-9.e+-]+)$")

Overrides = tuple[dict, dict]


def _no_overrides(model: dict, train: dict) -> Overrides:
    return {}, {}


def _plain_vae(model: dict, train: dict) -> Overrides:
    return {}, {"irecon": 0.0}


def _narrow_vae(model: dict, train: dict) -> Overrides:
    """A latent as wide as the bottleneck (at least 2); the unused module narrower still."""
    width = max(int(model["i_dim"]), 2)
    return {"latent_dim": width, "i_dim": width - 1}, {"irecon": 0.0}


def _beta_matched_vae(model: dict, train: dict) -> Overrides:
    """The iVAE minimises recon + irecon · recon(ld) + β · KL: per unit of reconstruction
    weight (1 + irecon) its KL weighs β / (1 + irecon). This VAE has that weight."""
    return {}, {"irecon": 0.0, "beta": float(train["beta"]) / (1.0 + float(train["irecon"]))}


def _stop_gradient(model: dict, train: dict) -> Overrides:
    return {"stop_gradient": True}, {}


@dataclass(frozen=True)
class Method:
    """One method: ``overrides(model settings, train settings) -> (model, train)`` values
    that differ from the dataset's; ``covariates``: whether it is conditioned on the
    dataset's covariates (where the dataset has any)."""

    name: str
    role: str
    colour: str
    description: str
    overrides: Callable[[dict, dict], Overrides] = field(default=_no_overrides, compare=False)
    covariates: bool = True

    @property
    def trained(self) -> bool:
        return self.role != "baseline"


#: The built-in methods, in the order figures and tables show them.
BUILT_IN: dict[str, Method] = {m.name: m for m in [
    Method(MAIN, "model", "#D55E00", "the iVAE: recon + irecon · recon through the interpretative module + β · KL"),
    Method("VAE", "control", "#0072B2", "the same network without the interpretative loss (irecon = 0)", _plain_vae),
    Method("VAE-narrow", "control", "#56B4E9",
           "a VAE whose latent is as narrow as the interpretative bottleneck (latent_dim = max(i_dim, 2))",
           _narrow_vae),
    Method("VAE-beta-matched", "control", "#009E73",
           "a VAE whose KL weighs as much against the reconstruction as in the iVAE (β / (1 + irecon))",
           _beta_matched_vae),
    Method("iVAE-stop-gradient", "control", "#E69F00",
           "the iVAE whose module sees z with its gradient stopped: the module cannot shape z", _stop_gradient),
    Method(NO_COVARIATES, "control", "#882255", "the iVAE without the dataset's covariates",
           covariates=False),
    Method("scVI", "standard", "#44AA99", "scvi-tools' SCVI at its defaults (Lopez et al. 2018)"),
    Method("LDVAE", "standard", "#AA4499",
           "scvi-tools' LinearSCVI at its defaults: a linear decoder whose loadings are gene programs "
           "(Svensson et al. 2020)"),
    Method("PCA", "baseline", BASELINE_GREY, "principal components of the log-normalised genes"),
    Method("ICA", "baseline", BASELINE_GREY, "FastICA of the log-normalised genes"),
    Method("NMF", "baseline", BASELINE_GREY, "non-negative matrix factorisation of the log-normalised genes"),
    Method("FA", "baseline", BASELINE_GREY, "factor analysis of the log-normalised genes"),
]}
#: The linear baselines, fitted by the ``baselines`` rule.
BASELINES = tuple(name for name, m in BUILT_IN.items() if m.role == "baseline")
#: The field's standard models (scvi-tools), trained by the ``train_standard`` rule.
STANDARD = tuple(name for name, m in BUILT_IN.items() if m.role == "standard")
#: The controls of "does the interpretative module help?": those conditioned like the iVAE
#: (the one without covariates answers another question).
MODULE_CONTROLS = [name for name, m in BUILT_IN.items() if m.role == "control" and m.covariates]


def default_methods(has_covariates: bool) -> list[str]:
    """The trained models of the default run: the iVAE, its controls, and with covariates
    the iVAE without them."""
    return [name for name, m in BUILT_IN.items()
            if m.role in ("model", "control") and (m.name != NO_COVARIATES or has_covariates)]


def compare_method(name: str, entry: dict, position: int = 0) -> Method:
    """A model of config ``compare``: ``entry`` holds its model/train values and optionally
    its ``colour``; without one it takes the palette's colour at ``position``."""
    if name in BUILT_IN:
        raise ValueError(f"compare: {name!r} is a built-in method ({', '.join(BUILT_IN)}); choose another name")
    model, train = dict(entry.get("model") or {}), dict(entry.get("train") or {})
    free = [c for c in OKABE_ITO + TOL_MUTED if c not in {m.colour for m in BUILT_IN.values()}]
    colour = entry.get("colour") or free[position % len(free)]
    settings = ", ".join(f"{k} {v:g}" if isinstance(v, (int, float)) else f"{k} {v}"
                         for k, v in {**model, **train}.items())
    return Method(name, "compare", colour, f"config compare: {settings}", lambda _model, _train: (model, train))


def swept_method(name: str, model_keys, integer_keys=()) -> Method:
    """A ``sweep`` method ``key=value``: the iVAE with one setting changed. ``model_keys``:
    the settings of the model section (others are train settings); ``integer_keys``: those
    whose values are integers."""
    swept = SWEPT.match(name)
    if not swept:
        raise ValueError(f"unknown method {name!r}")
    key, value = swept["key"], float(swept["value"])
    value = int(value) if key in integer_keys else value
    change = ({key: value}, {}) if key in model_keys else ({}, {key: value})
    return Method(name, "sweep", BUILT_IN[MAIN].colour, f"the iVAE with {key} = {value:g}",
                  lambda _model, _train: change)


def colour(name: str, compare: dict | None = None) -> str:
    """A method's colour: built-in, then config ``compare`` (its ``colour`` or the
    palette's), sweeps as the iVAE, else one from the palette by name."""
    if name in BUILT_IN:
        return BUILT_IN[name].colour
    if compare and name in compare:
        return compare_method(name, compare[name], list(compare).index(name)).colour
    if SWEPT.match(name):
        return BUILT_IN[MAIN].colour
    return OKABE_ITO[sum(map(ord, name)) % len(OKABE_ITO)]
