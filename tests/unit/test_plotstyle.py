"""plotstyle.py: palettes and method colours. Small synthetic inputs: files, resolution, content."""


import plotstyle


def test_categorical_colors_okabe_ito_then_distinct_fallback():
    assert plotstyle.categorical_colors(8) == plotstyle.OKABE_ITO
    many = plotstyle.categorical_colors(20)
    assert len(set(many)) == 20
