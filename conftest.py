"""Shared by tests/ and bench/: every registered backend (kernels.BACKENDS), as fixtures.

A test that takes `backend` (the kernel module) or `backend_name` (its name, as --backend spells
it) runs once per registered backend, with the name as its id; a new backend is tested by
registering it.
"""

import pytest

import kernels


@pytest.fixture(params=list(kernels.BACKENDS))
def backend_name(request):
    """The name of a registered backend: one run of the test per name."""
    return request.param


@pytest.fixture
def backend(backend_name):
    """The kernel module of backend_name, checked against the contract (kernels.load_backend)."""
    return kernels.load_backend(backend_name)
