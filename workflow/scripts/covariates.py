"""Categorical covariates (batch_key, covariate_keys) as the integer codes the model takes."""

import numpy as np
import pandas as pd

from rule_io import InputError


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
