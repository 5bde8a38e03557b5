__version__ = "0.1.0"
"""asintrovae: a literate reproduction of AS-IntroVAE (Lu et al., ACML 2022). The modules are exported from nbs/.

`import asintrovae` is instant: each submodule (and torch with it) is imported the first time it is used, e.g.
`asintrovae.kernel.as_distance(...)`, or directly with `from asintrovae.kernel import as_distance`.
"""
import importlib

MODULES = ('data', 'kernel', 'theory', 'models', 'losses', 'train', 'metrics', 'reproduce')
__all__ = list(MODULES)


def __getattr__(name):
    "Import submodule `name` on first access (PEP 562)."
    if name in MODULES: return importlib.import_module(f'.{name}', __name__)
    raise AttributeError(f"module 'asintrovae' has no attribute {name!r}; its modules are {', '.join(MODULES)}")


def __dir__(): return sorted([*globals(), *MODULES])
