"""A module whose function tests/targets/observed.py imports with `from observed_lib import ...`:
watching observed_lib.scale must observe calls made through that imported reference."""


def scale(x, factor=2):
    return x * factor
