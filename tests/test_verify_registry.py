"""verify's stage registry, its profiles as data and its torch-free contract.

The profile numbers below were printed from verify/profiles.py before profiles became keyword-built data
(commit 3fea79f); they pin every size of every profile so a refactor cannot move one.
"""

from __future__ import annotations

from dataclasses import asdict

import pytest

import tests.verify_helpers  # noqa: F401
from verify import profiles

BASE = {
    ('quick', 'cpu'): {
        'name': 'quick',
        'matmul_n': 512,
        'matmul_check_n': 256,
        'min_time': 0.15,
        'copy_bytes': 33554432,
        'pcie_bytes': 0,
        'allreduce_sizes': (4096, 262144, 4194304),
        'ddp_image': 32,
        'ddp_batch': 2,
        'ddp_steps': 2,
        'convnet_batch': 8,
        'convnet_epochs': 4,
        'infer_image': 64,
        'infer_batches': (1, 4),
        'jpeg_count': 48,
        'jpeg_side': 128,
        'jpeg_workers': 2,
        'burn_s': 0.0,
        'memtest_s': 0.0,
        'burn_n': 0,
        'matmul_sizes': (),
    },
    ('full', 'cpu'): {
        'name': 'full',
        'matmul_n': 2048,
        'matmul_check_n': 512,
        'min_time': 0.5,
        'copy_bytes': 268435456,
        'pcie_bytes': 0,
        'allreduce_sizes': (4096, 65536, 1048576, 16777216, 67108864),
        'ddp_image': 64,
        'ddp_batch': 4,
        'ddp_steps': 8,
        'convnet_batch': 16,
        'convnet_epochs': 6,
        'infer_image': 224,
        'infer_batches': (1, 8, 32),
        'jpeg_count': 256,
        'jpeg_side': 256,
        'jpeg_workers': 4,
        'burn_s': 0.0,
        'memtest_s': 0.0,
        'burn_n': 0,
        'matmul_sizes': (),
    },
    ('quick', 'cuda'): {
        'name': 'quick',
        'matmul_n': 8192,
        'matmul_check_n': 1024,
        'min_time': 0.3,
        'copy_bytes': 1073741824,
        'pcie_bytes': 268435456,
        'allreduce_sizes': (1048576, 16777216, 67108864, 268435456),
        'ddp_image': 224,
        'ddp_batch': 32,
        'ddp_steps': 10,
        'convnet_batch': 64,
        'convnet_epochs': 8,
        'infer_image': 224,
        'infer_batches': (1, 32, 128),
        'jpeg_count': 256,
        'jpeg_side': 256,
        'jpeg_workers': 4,
        'burn_s': 0.0,
        'memtest_s': 0.0,
        'burn_n': 0,
        'matmul_sizes': (4096, 8192),
    },
    ('full', 'cuda'): {
        'name': 'full',
        'matmul_n': 16384,
        'matmul_check_n': 2048,
        'min_time': 1.0,
        'copy_bytes': 4294967296,
        'pcie_bytes': 1073741824,
        'allreduce_sizes': (1048576, 4194304, 16777216, 67108864, 268435456, 1073741824),
        'ddp_image': 224,
        'ddp_batch': 64,
        'ddp_steps': 30,
        'convnet_batch': 128,
        'convnet_epochs': 10,
        'infer_image': 224,
        'infer_batches': (1, 8, 32, 128, 256),
        'jpeg_count': 1024,
        'jpeg_side': 256,
        'jpeg_workers': 8,
        'burn_s': 0.0,
        'memtest_s': 0.0,
        'burn_n': 0,
        'matmul_sizes': (4096, 8192, 16384),
    },
}
# make(name, device_type, free_bytes, duration): the fields that differ from the base profile
DERIVED = {
    ('quick', 'cpu', None, None): {},
    ('quick', 'cpu', 85899345920, None): {},
    ('quick', 'cpu', 12884901888, None): {},
    ('quick', 'cpu', 1073741824, None): {},
    ('full', 'cpu', None, None): {},
    ('full', 'cpu', 85899345920, None): {},
    ('full', 'cpu', 12884901888, None): {},
    ('full', 'cpu', 1073741824, None): {'copy_bytes': 134217728},
    ('nightly', 'cpu', None, None): {'name': 'nightly', 'burn_s': 210.0, 'memtest_s': 90.00000000000001, 'burn_n': 512},
    ('nightly', 'cpu', None, 60): {'name': 'nightly', 'burn_s': 42.0, 'memtest_s': 18.000000000000004, 'burn_n': 512},
    ('nightly', 'cpu', 85899345920, None): {'name': 'nightly', 'burn_s': 210.0, 'memtest_s': 90.00000000000001, 'burn_n': 512},
    ('nightly', 'cpu', 85899345920, 60): {'name': 'nightly', 'burn_s': 42.0, 'memtest_s': 18.000000000000004, 'burn_n': 512},
    ('nightly', 'cpu', 12884901888, None): {'name': 'nightly', 'burn_s': 210.0, 'memtest_s': 90.00000000000001, 'burn_n': 512},
    ('nightly', 'cpu', 12884901888, 60): {'name': 'nightly', 'burn_s': 42.0, 'memtest_s': 18.000000000000004, 'burn_n': 512},
    ('nightly', 'cpu', 1073741824, None): {'name': 'nightly', 'burn_s': 210.0, 'memtest_s': 90.00000000000001, 'burn_n': 512},
    ('nightly', 'cpu', 1073741824, 60): {'name': 'nightly', 'burn_s': 42.0, 'memtest_s': 18.000000000000004, 'burn_n': 512},
    ('acceptance', 'cpu', None, None): {'name': 'acceptance', 'burn_s': 1260.0, 'memtest_s': 540.0000000000001, 'burn_n': 2048},
    ('acceptance', 'cpu', None, 60): {'name': 'acceptance', 'burn_s': 42.0, 'memtest_s': 18.000000000000004, 'burn_n': 2048},
    ('acceptance', 'cpu', 85899345920, None): {'name': 'acceptance', 'burn_s': 1260.0, 'memtest_s': 540.0000000000001, 'burn_n': 2048},
    ('acceptance', 'cpu', 85899345920, 60): {'name': 'acceptance', 'burn_s': 42.0, 'memtest_s': 18.000000000000004, 'burn_n': 2048},
    ('acceptance', 'cpu', 12884901888, None): {'name': 'acceptance', 'burn_s': 1260.0, 'memtest_s': 540.0000000000001, 'burn_n': 2048},
    ('acceptance', 'cpu', 12884901888, 60): {'name': 'acceptance', 'burn_s': 42.0, 'memtest_s': 18.000000000000004, 'burn_n': 2048},
    ('acceptance', 'cpu', 1073741824, None): {'name': 'acceptance', 'copy_bytes': 134217728, 'burn_s': 1260.0, 'memtest_s': 540.0000000000001, 'burn_n': 2048},
    ('acceptance', 'cpu', 1073741824, 60): {'name': 'acceptance', 'copy_bytes': 134217728, 'burn_s': 42.0, 'memtest_s': 18.000000000000004, 'burn_n': 2048},
    ('quick', 'cuda', None, None): {},
    ('quick', 'cuda', 85899345920, None): {},
    ('quick', 'cuda', 12884901888, None): {},
    ('quick', 'cuda', 1073741824, None): {'matmul_n': 4096, 'copy_bytes': 134217728, 'allreduce_sizes': (1048576, 16777216, 67108864), 'matmul_sizes': (4096,)},
    ('full', 'cuda', None, None): {},
    ('full', 'cuda', 85899345920, None): {},
    ('full', 'cuda', 12884901888, None): {'copy_bytes': 2147483648},
    ('full', 'cuda', 1073741824, None): {'matmul_n': 4096, 'copy_bytes': 134217728, 'allreduce_sizes': (1048576, 4194304, 16777216, 67108864), 'matmul_sizes': (4096,)},
    ('nightly', 'cuda', None, None): {'name': 'nightly', 'burn_s': 210.0, 'memtest_s': 90.00000000000001, 'burn_n': 8192},
    ('nightly', 'cuda', None, 60): {'name': 'nightly', 'burn_s': 42.0, 'memtest_s': 18.000000000000004, 'burn_n': 8192},
    ('nightly', 'cuda', 85899345920, None): {'name': 'nightly', 'burn_s': 210.0, 'memtest_s': 90.00000000000001, 'burn_n': 8192},
    ('nightly', 'cuda', 85899345920, 60): {'name': 'nightly', 'burn_s': 42.0, 'memtest_s': 18.000000000000004, 'burn_n': 8192},
    ('nightly', 'cuda', 12884901888, None): {'name': 'nightly', 'burn_s': 210.0, 'memtest_s': 90.00000000000001, 'burn_n': 8192},
    ('nightly', 'cuda', 12884901888, 60): {'name': 'nightly', 'burn_s': 42.0, 'memtest_s': 18.000000000000004, 'burn_n': 8192},
    ('nightly', 'cuda', 1073741824, None): {'name': 'nightly', 'matmul_n': 4096, 'copy_bytes': 134217728, 'allreduce_sizes': (1048576, 16777216, 67108864), 'burn_s': 210.0, 'memtest_s': 90.00000000000001, 'burn_n': 4096, 'matmul_sizes': (4096,)},
    ('nightly', 'cuda', 1073741824, 60): {'name': 'nightly', 'matmul_n': 4096, 'copy_bytes': 134217728, 'allreduce_sizes': (1048576, 16777216, 67108864), 'burn_s': 42.0, 'memtest_s': 18.000000000000004, 'burn_n': 4096, 'matmul_sizes': (4096,)},
    ('acceptance', 'cuda', None, None): {'name': 'acceptance', 'burn_s': 1260.0, 'memtest_s': 540.0000000000001, 'burn_n': 16384},
    ('acceptance', 'cuda', None, 60): {'name': 'acceptance', 'burn_s': 42.0, 'memtest_s': 18.000000000000004, 'burn_n': 16384},
    ('acceptance', 'cuda', 85899345920, None): {'name': 'acceptance', 'burn_s': 1260.0, 'memtest_s': 540.0000000000001, 'burn_n': 16384},
    ('acceptance', 'cuda', 85899345920, 60): {'name': 'acceptance', 'burn_s': 42.0, 'memtest_s': 18.000000000000004, 'burn_n': 16384},
    ('acceptance', 'cuda', 12884901888, None): {'name': 'acceptance', 'copy_bytes': 2147483648, 'burn_s': 1260.0, 'memtest_s': 540.0000000000001, 'burn_n': 8192},
    ('acceptance', 'cuda', 12884901888, 60): {'name': 'acceptance', 'copy_bytes': 2147483648, 'burn_s': 42.0, 'memtest_s': 18.000000000000004, 'burn_n': 8192},
    ('acceptance', 'cuda', 1073741824, None): {'name': 'acceptance', 'matmul_n': 4096, 'copy_bytes': 134217728, 'allreduce_sizes': (1048576, 4194304, 16777216, 67108864), 'burn_s': 1260.0, 'memtest_s': 540.0000000000001, 'burn_n': 4096, 'matmul_sizes': (4096,)},
    ('acceptance', 'cuda', 1073741824, 60): {'name': 'acceptance', 'matmul_n': 4096, 'copy_bytes': 134217728, 'allreduce_sizes': (1048576, 4194304, 16777216, 67108864), 'burn_s': 42.0, 'memtest_s': 18.000000000000004, 'burn_n': 4096, 'matmul_sizes': (4096,)},
}


@pytest.mark.parametrize("name, device_type", sorted(BASE))
def test_base_profiles_are_pinned(name, device_type):
    assert asdict(profiles.make(name, device_type)) == BASE[(name, device_type)]


@pytest.mark.parametrize("name, device_type, free_bytes, duration", sorted(DERIVED, key=repr))
def test_fitted_and_sustained_profiles_are_pinned(name, device_type, free_bytes, duration):
    made = asdict(profiles.make(name, device_type, free_bytes, duration))
    base = BASE[(profiles.SUSTAINED.get(name, name), device_type)]
    assert made == {**base, **DERIVED[(name, device_type, free_bytes, duration)]}
