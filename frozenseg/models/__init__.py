"""The models, one package each: :mod:`.frozenseg` (frozen CLIP + frozen SAM + a light
Mask2Former-style decoder) and :mod:`.ovseg` (MaskFormer proposals classified by a mask-adapted
CLIP). Each package holds its meta-architecture (a :class:`~frozenseg.modeling.contract.
SegmentationModel`), its heads, decoders, criterion and post-processing, its config keys
(``add_*_config``) and its model-specific jobs; what models share lives in
:mod:`frozenseg.modeling`, :mod:`frozenseg.layers` and the other shared packages.

Importing this package imports every subpackage, which registers its components: a new model is
a new folder here and changes nothing else (``docs/adding_a_model.md``).
"""

import importlib
import pkgutil

__all__ = [info.name for info in pkgutil.iter_modules(__path__) if info.ispkg]

for _name in __all__:
    importlib.import_module(f"{__name__}.{_name}")
