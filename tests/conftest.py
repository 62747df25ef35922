"""Test-wide settings."""

import torch


def pytest_configure(config):
    # The tests work on tiny tensors, where a second thread costs more than it gains: on the
    # 2-core CI machine the suite is several times faster on one thread.
    torch.set_num_threads(1)
