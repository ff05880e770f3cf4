"""fp's agent inside the target process: the commands that need Python objects (stdlib only).
The native agent loads it from its file, not sys.path, and calls fp_agent.dispatch with the GIL.
"""

# The loader must put this package in sys.modules as "fp_agent" before running it, as
# importlib's module_from_spec + exec_module recipe does: the relative imports need it there.
from . import pycache

pycache.install(__path__[0])  # the package's other modules load through fp's bytecode cache

from . import dispatch  # noqa: E402,F401  (the native side reaches fp_agent.dispatch as an attribute)
