"""Unit tests of dufm.report."""

import numpy as np
import pytest

from dufm.report import describe_cells, html_table


def test_describe_cells_lists_true_cells_by_depth():
    mask = np.array([[False, True], [True, True], [False, False]])
    assert describe_cells(mask, [4, 5, 6], [1, 2]) == "K = 5 at L = 1; K = 4, 5 at L = 2"
    assert describe_cells(np.zeros((3, 2)), [4, 5, 6], [1, 2]) == "none"


def test_describe_cells_rejects_a_mask_of_the_wrong_shape():
    with pytest.raises(ValueError, match="mask.shape"):
        describe_cells(np.zeros((2, 2)), [4], [1, 2])


def test_html_table_right_aligns_numbers_and_escapes_text():
    html = html_table(["a", "b"], [["<x>", 1.5]], caption="c").data
    assert "&lt;x&gt;" in html and 'style="text-align: right">1.5' in html and "<caption>c" in html
