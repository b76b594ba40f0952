import json
from pathlib import Path

import pytest
import sklearn

DATA = Path(__file__).parent / "data"


def load_reference(name):
    """A reference fit (lme4 1.1-31 / mgcv 1.8-41) copied from shared/reference."""
    with open(DATA / f"{name}.json") as fh:
        return json.load(fh)


@pytest.fixture
def reference():
    return load_reference


@pytest.fixture
def routing():
    """scikit-learn metadata routing on for one test, off again afterwards."""
    sklearn.set_config(enable_metadata_routing=True)
    yield
    sklearn.set_config(enable_metadata_routing=False)
