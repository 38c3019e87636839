"""OVSeg's CLIP-adaptation stages (docs/models/ovseg.md §3.B1-§3.C), imported on their own:
caption nouns (:mod:`.caption_nouns`), mining mask-noun pairs with a trained OVSeg
(:mod:`.pair_mining`, files in :mod:`.mask_noun_pairs`), adapting CLIP on them
(:mod:`.clip_training`) and splicing the adapted CLIP into an OVSeg checkpoint (:mod:`.splice`)."""
