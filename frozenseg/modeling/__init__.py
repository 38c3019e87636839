"""Models and their parts: ``build_model`` (:mod:`.build`), the meta-architectures
(:mod:`.meta_arch`), backbones (:mod:`.backbone`), the frozen SAM (:mod:`.sam`), pixel and
transformer decoders, heads (:mod:`.heads` FrozenSeg's, :mod:`.ovseg_head` OVSeg's), OVSeg's
mask-adapted CLIP (:mod:`.clip_adapter`), matching, losses and post-processing. Not here:
loading checkpoint files (``frozenseg.checkpoint``), datasets and vocabularies (``data``).
"""
