"""Categorical covariates (batch_key, covariate_keys) as the integer codes the model takes."""

import numpy as np
import pandas as pd

from rule_io import InputError, log


def covariate_codes(obs, keys, categories=None, *, what: str = "the data"):
    """Integer codes (cells x len(keys), or None without keys) of categorical obs columns,
    and each column's categories (sorted strings).

    With ``categories`` (those a model was trained with), the values are coded against
    them; a value the model never saw, a missing column or a missing value is an InputError
    naming ``what``.
    """
    keys = list(keys)
    if not keys:
        return None, []
    missing = [k for k in keys if k not in obs.columns]
    if missing:
        raise InputError(f"{what}: covariate column(s) {missing} not in obs; its columns are {list(obs.columns)}.")
    codes, found = [], []
    for i, key in enumerate(keys):
        values = obs[key]
        if values.isna().any():
            raise InputError(f"{what}: obs['{key}'] has {int(values.isna().sum())} missing values; "
                             "every cell needs one.")
        values = values.astype(str)
        known = list(categories[i]) if categories is not None else sorted(values.unique())
        index = pd.Index(known)
        coded = index.get_indexer(values)
        if (coded < 0).any():
            new = sorted(set(values[coded < 0]))
            raise InputError(f"{what}: obs['{key}'] has values the model was not trained with: {new} "
                             f"(it knows {known}).")
        codes.append(coded)
        found.append(known)
    return np.column_stack(codes).astype(np.int64), found


def check_covariate_kinds(obs, keys, *, what: str = "the data") -> None:
    """InputError unless every covariate column groups cells into categories: not
    non-integer numbers (a continuous value: bin it first) and not nearly one value per
    cell (an identifier: at most half as many values as cells). A column with one value is
    allowed (it conditions on nothing) and logged."""
    for key in keys:
        values = obs[key]
        if pd.api.types.is_float_dtype(values) and not np.all(np.mod(values.dropna().to_numpy(), 1) == 0):
            raise InputError(f"{what}: obs['{key}'] holds non-integer numbers (a continuous value); covariates are "
                             "categories (batch, donor, technology): bin it into categories or use another column.")
        n_values, n_cells = values.nunique(dropna=True), len(values)
        if n_cells >= 4 and n_values > n_cells / 2:
            raise InputError(f"{what}: obs['{key}'] has {n_values} distinct values for {n_cells} cells; a covariate "
                             "groups cells (batch, donor): at most one value per two cells. Is it a cell identifier?")
        if n_values == 1:
            log.warning("%s: covariate obs['%s'] has one value: the models are conditioned on nothing", what, key)
