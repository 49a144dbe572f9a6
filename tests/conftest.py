"""Shared pytest fixtures: where the real data sets live, and a fast default for torch threads."""
import os
from pathlib import Path

import pytest
import torch

# The repository root, and the real data sets (GSM8K, SVAMP, ReFT's files). They are not ours to ship,
# so they never live in the repository: the tests look for them in ONE place, the folder named by the
# environment variable REFT_DATA_DIR (by default a `shared/datasets` folder beside the repository), and
# the tests that need them skip cleanly on a machine that does not have them.
REPO = Path(__file__).resolve().parents[1]
DATA_DIR = Path(os.environ.get("REFT_DATA_DIR", REPO.parent / "shared" / "datasets"))

torch.set_num_threads(min(2, torch.get_num_threads()))


@pytest.fixture(scope="session")
def shared_datasets() -> Path:
    """The real data sets' folder ($REFT_DATA_DIR), or skip the test when it is absent."""
    if not DATA_DIR.is_dir():
        pytest.skip(f"real data sets not found at {DATA_DIR} (set REFT_DATA_DIR)")
    return DATA_DIR
