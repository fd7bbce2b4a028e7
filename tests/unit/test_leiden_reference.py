"""leiden_reference.py: the Leiden reference clusters (the metrics' reference without labels)."""

import numpy as np
import pandas as pd


def test_leiden_reference_of_20000_cells(clusters_20000):
    """cell_labels' Leiden clusters (PCA -> pynndescent kNN graph -> Leiden) recover the clusters."""
    from sklearn.metrics import adjusted_rand_score

    from leiden_reference import reference_labels

    latent, labels = clusters_20000
    expression = np.abs(latent)  # a non-negative "expression" matrix with the same structure
    found, kind = reference_labels(pd.DataFrame(index=np.arange(20_000).astype(str)), expression,
                                   label_key=None, resolution=0.2)
    assert kind == "clusters" and len(found) == 20_000
    assert adjusted_rand_score(labels, found) > 0.9
