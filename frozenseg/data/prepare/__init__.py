"""Dataset preparation: converters from the raw releases (as downloaded) to the layouts the
built-in datasets are registered with (datasets/README.md), one module per dataset family.

The command lines are ``datasets/prepare_*.py``, each a thin call of a ``*main`` function here:

============================================================  ==========================================
script                                                        conversion
============================================================  ==========================================
``prepare_ade20k_sem_seg.py``                                 :func:`.ade20k.convert_sem_seg`
``prepare_ade20k_pan_seg.py``                                 :func:`.ade20k.convert_pan_seg`
``prepare_ade20k_ins_seg.py``                                 :func:`.ade20k.convert_ins_seg`
``prepare_ade20k_full_sem_seg.py``                            :func:`.ade20k_full.convert`
``prepare_coco_semantic_annos_from_panoptic_annos.py``        :func:`.coco.convert_panoptic_to_sem_seg`
``prepare_coco_stuff_sem_seg.py``                             :func:`.coco.convert_stuff_sem_seg`
``prepare_pascal_voc_sem_seg.py``                             :func:`.pascal.convert_voc_sem_seg`
``prepare_pascal_ctx_sem_seg.py``                             :func:`.pascal.convert_ctx_sem_seg`
``prepare_bdd_panoptic.py``                                   :func:`.bdd.convert`
``prepare_lvis_vocabulary.py``                                :func:`.lvis.convert`
``prepare_ovseg_vocabularies.py``                             :func:`.ovseg.convert`
============================================================  ==========================================

Every converter takes the datasets root first, raises :class:`.common.InputError` (one sentence
naming what is missing or malformed) on bad input, logs what it wrote and returns a summary of it.
"""
