"""Engine: the training and inference stack in Detectron2's conventions — setting up a run
(:mod:`.setup`), launching (torch.distributed / DDP), the trainer and its hooks, optimiser and LR
schedules, metrics writers, the evaluation loop with test-time augmentation, and the predictor
(:mod:`.predictor`, one image in, outputs out). The training checkpointer lives in
``frozenseg.checkpoint`` and is re-exported here. Not here: models (``models``, ``modeling``),
evaluators (``evaluation``), applications (``apps``), argument parsing beyond
``default_argument_parser`` (the command lines).

Typical use (what ``train_net.py`` does)::

    args = default_argument_parser().parse_args()
    launch(main, args.num_gpus, args.num_machines, args.machine_rank, args.dist_url, args=(args,))

    def main(args):
        cfg = setup_cfg(args); default_setup(cfg, args)
        trainer = DefaultTrainer(cfg, resume=args.resume)
        trainer.resume_or_load(resume=args.resume)
        return trainer.train()
"""

from ..utils import comm
from ..utils.rng import seed_all_rng
from ..checkpoint import checkpointer
from ..checkpoint.checkpointer import *  # noqa: F401,F403
from . import defaults, env, events, hooks, lr_scheduler, optimizer, predictor, setup, train_loop, tta
from . import launch as _launch_module
from .defaults import *  # noqa: F401,F403
from .env import *  # noqa: F401,F403
from .events import *  # noqa: F401,F403
from .hooks import *  # noqa: F401,F403
from .launch import *  # noqa: F401,F403
from .lr_scheduler import *  # noqa: F401,F403
from .optimizer import *  # noqa: F401,F403
from .predictor import *  # noqa: F401,F403
from .setup import *  # noqa: F401,F403
from .train_loop import *  # noqa: F401,F403
from .tta import *  # noqa: F401,F403

# The public names of the submodules, plus the process-group helpers (``comm``) and the seeding of
# every RNG (they live in frozenseg.utils).
__all__ = [
    "comm",
    "seed_all_rng",
    *(name for module in (checkpointer, defaults, env, events, hooks, _launch_module, lr_scheduler,
                          optimizer, predictor, setup, train_loop, tta) for name in module.__all__),
]
