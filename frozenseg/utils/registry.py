"""Component registries (fvcore's ``Registry``): names in configs map to classes."""

from fvcore.common.registry import Registry as _FvRegistry


class Registry(_FvRegistry):
    """fvcore's registry, plus registration under an explicit name.

    ``REG.register(name="ReleasedName")`` as a decorator (or ``REG.register(cls, name=...)``)
    registers a class under the name that released config files use.
    """

    def register(self, obj=None, *, name: str | None = None):
        if obj is None:

            def deco(cls):
                self._do_register(name or cls.__name__, cls)
                return cls

            return deco
        self._do_register(name or obj.__name__, obj)
        return obj


BACKBONE_REGISTRY = Registry("BACKBONE")
BACKBONE_REGISTRY.__doc__ = "Frozen CLIP visual backbones, selected by MODEL.BACKBONE.NAME."

PIXEL_DECODER_REGISTRY = Registry("PIXEL_DECODER")
PIXEL_DECODER_REGISTRY.__doc__ = "Pixel decoders, selected by MODEL.SEM_SEG_HEAD.PIXEL_DECODER_NAME."

TRANSFORMER_DECODER_REGISTRY = Registry("TRANSFORMER_MODULE")
TRANSFORMER_DECODER_REGISTRY.__doc__ = (
    "Transformer decoders, selected by MODEL.MASK_FORMER.TRANSFORMER_DECODER_NAME."
)

SEM_SEG_HEADS_REGISTRY = Registry("SEM_SEG_HEADS")
SEM_SEG_HEADS_REGISTRY.__doc__ = "Segmentation heads, selected by MODEL.SEM_SEG_HEAD.NAME."

META_ARCH_REGISTRY = Registry("META_ARCH")
META_ARCH_REGISTRY.__doc__ = "Whole models, selected by MODEL.META_ARCHITECTURE."
