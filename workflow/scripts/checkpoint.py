"""A trained model's file (model.pt): its weights with what rebuilds it (settings, genes,
covariate categories)."""

from rule_io import InputError, atomic_path


def save_checkpoint(path, model, *, gene_names, model_params: dict, train_params: dict, extra: dict | None = None):
    """Write everything needed to rebuild the model and embed new cells.

    ``model_params`` are the model's constructor arguments (``n_genes`` = the number of
    ``gene_names``, widths, covariate categories).
    """
    import torch

    if model_params["n_genes"] != len(gene_names):
        raise ValueError(f"n_genes={model_params['n_genes']} but {len(gene_names)} gene names")
    payload = {
        "format": "ivae-workflow/1",
        "state_dict": {k: v.detach().cpu() for k, v in model.state_dict().items()},
        "model_params": {k: list(v) if isinstance(v, tuple) else v for k, v in model_params.items()},
        "train_params": dict(train_params),
        "gene_names": list(map(str, gene_names)),
        **(extra or {}),
    }
    with atomic_path(path) as tmp:
        torch.save(payload, tmp)


def load_checkpoint(path, map_location="cpu"):
    """Return ``(model, payload)`` with the model rebuilt, weights loaded, in eval mode."""
    import torch

    from model import VAE

    payload = torch.load(path, map_location=map_location, weights_only=True)
    if payload.get("format") != "ivae-workflow/1":
        raise InputError(f"{path}: not an ivae-workflow checkpoint.")
    params = payload["model_params"]
    model = VAE(**{**params, "n_categories": tuple(params.get("n_categories", ()))})
    model.load_state_dict(payload["state_dict"])
    model.eval()
    return model, payload
