"""cell_table.py: per-cell tables keep every cell name exactly."""

import numpy as np



def test_cell_table_keeps_every_name_exactly(tmp_path):
    """Names that look like numbers or missing values, spaces, quotes, tabs, non-ASCII."""
    import pandas as pd

    from cell_table import read_cell_table, write_cell_table

    names = ["0001", "3348", "12", "NA", "nan", " spaced cell ", "Zelle-ä", 'a "quoted", name', "tab\there", "1e5"]
    table = pd.DataFrame({"cluster": ["01", "2", "2", "3", "3", "1", "1", "0", "0", "10"],
                          "label": ["T", "NA", None, "B", "B", "T", "NK", "NK", "T", "B"],
                          "score": np.arange(10) / 4},
                         index=pd.Index(names, name="cell"))
    write_cell_table(table, tmp_path / "t.tsv")
    back = read_cell_table(tmp_path / "t.tsv", numeric=("score",))
    assert list(back.index) == names and back.index.name == "cell"
    assert list(back["cluster"]) == list(table["cluster"])
    assert back["label"].tolist()[:2] == ["T", "NA"] and pd.isna(back["label"].iloc[2])
    np.testing.assert_array_equal(back["score"].to_numpy(), table["score"].to_numpy())
