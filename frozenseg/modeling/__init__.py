"""What every model shares: the model contract (:mod:`.contract`), ``build_model`` and the lookup
of ``MODEL.META_ARCHITECTURE`` (:mod:`.build`), input preparation (:mod:`.inputs`), the frozen
CLIP wrapper and the text classifier (:mod:`.backbone`), the frozen SAM (:mod:`.sam`), matching
(:mod:`.matcher`), the set-criterion base (:mod:`.criterion`), open-vocabulary primitives
(:mod:`.open_vocab`), Mask2Former-style post-processing and ensembles (:mod:`.postprocessing`),
and the precision and int8 switches of frozen encoders. The models themselves are in
:mod:`frozenseg.models`, one package each. Not here: loading checkpoint files
(``frozenseg.checkpoint``), datasets and vocabularies (``data``).
"""
