"""A helper module imported by inspectee.py, for `module FILE` and getglobal on a non-main module."""

HELPER_VALUE = {"answer": 42, "words": ["fp", "helper"]}


class Helper:
    kind = "helper"
    sizes = (1, 2, 3)

    def __init__(self):
        self.created = True
