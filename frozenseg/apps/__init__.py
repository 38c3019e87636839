"""Applications built on the engine, each imported on its own: the web demo (:mod:`.web_demo`),
the inference benchmark (:mod:`.benchmark`), the GPU report (:mod:`.gpu_report`) and the offline
SAM-mask job (:mod:`.sam_masks`). Their command lines are in ``demo/`` and ``tools/``."""
