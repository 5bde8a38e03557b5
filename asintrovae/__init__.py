__version__ = "0.1.0"
"asintrovae: a literate reproduction of AS-IntroVAE (Lu et al., ACML 2022). The modules are exported from nbs/."

from . import data, kernel, theory, models, losses, train, metrics, reproduce
