"""Never imported by any target: `module FILE` must say it is not loaded."""
VALUE = 1
