"""The one set of input checks the API and the notebook parameters share."""

from __future__ import annotations

import numpy as np
import pytest

from sdsam_nb import runs, validate


def test_numbers_and_integers():
    assert validate.is_int(3) and validate.is_int(np.int64(3))
    assert not validate.is_int(True) and not validate.is_int(3.0)
    assert validate.is_number(np.float32(0.5)) and not validate.is_number(np.bool_(True))
    assert not validate.is_finite(float("nan"))
    assert validate.check_int(16, "size", low=8, multiple=8) == 16
    with pytest.raises(ValueError, match=r"size=12 must be a multiple of 8 \(e.g. 8\)"):
        validate.check_int(12, "size", low=8, multiple=8)
    with pytest.raises(ValueError, match="strength must be > 0 and <= 1, got 0.0"):
        validate.check_number(0, "strength", low=0, high=1, open_low=True)
    with pytest.raises(ValueError, match="box_threshold must be between 0 and 1"):
        validate.check_fraction(1.5, "box_threshold")
    with pytest.raises(ValueError, match="px must be a finite number of pixels"):
        validate.check_pixels(float("inf"), "px")


def test_points_are_read_one_way_for_the_api_and_the_notebooks():
    assert validate.parse_points([[1, 2], [3, 4, 0]]) == [(1, 2, 1), (3, 4, 0)]
    assert validate.parse_points(np.array([[1, 2]])) == [(1, 2, 1)]
    with pytest.raises(ValueError, match=r"for one point write \[\[x, y\]\]"):
        validate.parse_points([1, 2])
    with pytest.raises(ValueError, match="label must be 1 \\(include\\) or 0"):
        validate.parse_points([[1, 2, 5]])
    # the notebook parameter table uses the same rule
    assert runs.check_params(points=[[1, 2, 0]]) == {"points": [[1, 2, 0]]}
    for bad in ([1, 2], [[1, 2, 5]], [["a", 2]], [[float("nan"), 2]]):
        with pytest.raises(ValueError, match="parameter points must be"):
            runs.check_params(points=bad)
