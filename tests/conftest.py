"""Shared pytest fixtures: where the real data sets live, and a fast default for torch threads."""
from pathlib import Path

import pytest
import torch

# The repository root, and the real data sets that live *beside* it (never inside it: they are not ours
# to ship). Tests that need them skip cleanly on a machine that does not have them.
REPO = Path(__file__).resolve().parents[1]
SHARED_DATASETS = REPO.parent / "shared" / "datasets"

torch.set_num_threads(min(2, torch.get_num_threads()))


@pytest.fixture(scope="session")
def shared_datasets() -> Path:
    """Path to ../shared/datasets, or skip the test when it is absent."""
    if not SHARED_DATASETS.is_dir():
        pytest.skip(f"real data sets not found at {SHARED_DATASETS}")
    return SHARED_DATASETS
