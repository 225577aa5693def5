"""The usage examples in the metrics pipeline's docstrings run."""

import doctest
import importlib

import pytest

MODULES = ["shoal.viz.window", "shoal.viz.series", "shoal.viz.store", "shoal.viz.queries",
           "shoal.viz.sketchrows", "shoal.viz.cumulative", "shoal.viz.deflate"]


@pytest.mark.parametrize("name", MODULES)
def test_docstring_examples(name):
    result = doctest.testmod(importlib.import_module(name))
    assert result.attempted > 0 and result.failed == 0
