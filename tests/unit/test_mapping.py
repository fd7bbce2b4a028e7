"""Mapping a query onto a reference: gene matching, zero-filling, label transfer."""

import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp

from mapping import at_reference_genes, match_genes, transfer_labels


def test_match_by_name_and_zero_fill():
    query = pd.DataFrame(index=["B", "A", "D"])
    reference = pd.DataFrame(index=["A", "B", "C"])
    indexer, how = match_genes(query, reference)
    assert how == "name" and list(indexer) == [1, 0, -1]
    X = sp.csr_matrix(np.array([[1.0, 2, 3], [4, 5, 6]]))  # query columns B, A, D
    np.testing.assert_array_equal(at_reference_genes(X, indexer).toarray(), [[2, 1, 0], [5, 4, 0]])


def test_match_by_ensembl_id_when_both_have_them():
    query = pd.DataFrame({"gene_ids": ["ENSG2", "ENSG1"]}, index=["renamed", "A"])
    reference = pd.DataFrame({"gene_ids": ["ENSG1", "ENSG2"]}, index=["A", "B"])
    indexer, how = match_genes(query, reference)
    assert how == "Ensembl ID" and list(indexer) == [1, 0]  # "renamed" is B by its ID


def test_label_transfer_majority_and_confidence():
    rng = np.random.default_rng(0)
    reference = np.vstack([rng.normal(0, 0.1, (50, 2)), rng.normal(5, 0.1, (50, 2))])
    labels = np.repeat(["T", "B"], 50)
    query = np.array([[0.0, 0.0], [5.0, 5.0], [2.5, 2.5]])
    predicted, confidence = transfer_labels(reference, labels, query, n_neighbors=10)
    assert list(predicted[:2]) == ["T", "B"] and confidence[0] == confidence[1] == 1.0
    # on a line: T at 0, 1, 2 and B at 4 ... 9; the 5 nearest of 3.4 are 4, 2, 5, 1, 6: B by 3 of 5
    line = np.array([0, 1, 2, 4, 5, 6, 7, 8, 9], dtype=float)[:, None]
    predicted, confidence = transfer_labels(line, list("TTTBBBBBB"), np.array([[3.4]]), n_neighbors=5)
    assert predicted[0] == "B" and confidence[0] == 0.6
