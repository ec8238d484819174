"""Numba kernels of skdae.

Every module in this package holds only ``@njit`` functions over arrays and scalars: no
estimator state, no scikit-learn. Importing a kernel module creates the dispatchers but
compiles nothing; a kernel compiles on its first call and is cached on disk (see
:mod:`skdae._kernels._jit`).
"""
