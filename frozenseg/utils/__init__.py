"""Utilities without model or dataset knowledge: user errors and how command lines report them
(:mod:`.errors`), atomic file writing (:mod:`.file_io`), image reading (:mod:`.image_io`),
prediction files (:mod:`.prediction_io`), drawing (:mod:`.visualizer`), registries, config-path
resolution, RNG seeding, distributed helpers (:mod:`.comm`) and the CPU allocator setting
(:mod:`.cpu_memory`).
"""
