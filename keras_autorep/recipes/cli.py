"""The command line of the recipes (``recipes/*.py`` call ``main``).

One parser for every dataset and method (``build_parser``): the flags
every run shares, then one group per method family (teacher-based:
AutoReP, SNL, SENet; architecture search: CryptoNAS). Bad input exits with
status 2 and a one-line message before any training.
"""

import argparse
import os
import signal
import sys

from keras_autorep.adapters.keras_tuner_roles import tuner_role
from keras_autorep.allocation import ALLOCATIONS
from keras_autorep.architectures import MODELS
from keras_autorep.budgets import check_budget_text
from keras_autorep.export import UnstableModelError
from keras_autorep.layers.relu_selector import REPLACEMENTS
from keras_autorep.methods import METHODS
from keras_autorep.pi import RUNTIMES
from keras_autorep.recipes.presets import (
    DATASET_PRESETS,
    DEFAULTS,
    METHOD_PRESETS,
    QUICK_PRESET,
    QUICK_STREAMED,
    STREAMED_DATASETS,
)
from keras_autorep.recipes.recipe import prepare, print_summary, run_recipe
from keras_autorep.recipes.recipe import search_worker
from keras_autorep.recipes.settings import (
    IMAGENET_WEIGHTS,
    Settings,
    UsageError,
)
from keras_autorep.training.preemption import Preempted, stop_on_signals
from keras_autorep.training.schedules import FINAL_LR

AUTOREP = METHOD_PRESETS["autorep"]
CRYPTONAS = METHOD_PRESETS["cryptonas"]


def budget_argument(text):
    """argparse type: check a budget's syntax; it is resolved once the
    model's ReLU count is known."""
    try:
        return check_budget_text(text)
    except ValueError as e:
        raise argparse.ArgumentTypeError(str(e)) from None


def subset_argument(text):
    """argparse type: ``N_TRAIN,N_TEST`` positive image counts."""
    parts = text.split(",")
    if len(parts) != 2 or not all(p.strip().isdigit() and int(p) > 0
                                  for p in parts):
        raise argparse.ArgumentTypeError(
            f"expected N_TRAIN,N_TEST (positive integers), got {text!r}")
    return tuple(int(p) for p in parts)


def names_argument(text):
    """argparse type: comma-separated names, e.g. ``relu,silu``."""
    names = tuple(name.strip() for name in text.split(",") if name.strip())
    if not names:
        raise argparse.ArgumentTypeError(
            f"expected names like relu or silu,gelu, got {text!r}")
    return names


def depths_argument(text):
    """argparse type: comma-separated positive depths, e.g. ``1,2,3``."""
    parts = [p.strip() for p in text.split(",")]
    if not all(p.isdigit() and int(p) > 0 for p in parts):
        raise argparse.ArgumentTypeError(
            f"expected positive integers like 1,2,3, got {text!r}")
    return tuple(sorted({int(p) for p in parts}))


def _run_arguments(parser, dataset, method):
    """The flags of every run."""
    add = parser.add_argument
    add("--budget", required=True, type=budget_argument,
        help="ReLU budget: 12900, 12.9k, 1.2M, a percentage of the "
             "model's ReLUs such as 2.5%%, or a reduction factor such as "
             "176.1x (the model's ReLUs / 176.1); 0 keeps no ReLU; "
             "cryptonas takes counts only. Or a cost under --protocol "
             "(autorep): bytes of one inference, both directions, such as "
             "3.7MB or 800KB (decimal: 1 MB = 10^6 bytes), or a latency "
             "such as 250ms on --network")
    if dataset is None:
        add("--dataset", choices=sorted(set(DATASET_PRESETS)
                                        - set(STREAMED_DATASETS)),
            default="cifar10", help="dataset (default cifar10)")
    add("--method", choices=list(METHODS), default=method,
        help="how ReLUs are removed: autorep (ReLU or polynomial per "
             "position), snl (L1 masks, linear in place of ReLU), senet "
             "(sensitivity, mask identification, fine-tuning) or cryptonas "
             f"(a ReLU-balanced network searched and trained from scratch; "
             f"default {method})")
    add("--epochs", type=int, default=None,
        help="search epochs; cryptonas: training epochs of the best "
             f"candidate (default per dataset, cryptonas "
             f"{CRYPTONAS['epochs']})")
    add("--batch-size", type=int, default=None,
        help=f"batch size (default {DEFAULTS['batch_size']})")
    add("--lr", type=float, default=None,
        help=f"peak learning rate: Adam cosine-decayed to {FINAL_LR:g} "
             f"(default {DEFAULTS['lr']:g}); cryptonas: SGD cosine-decayed "
             f"to 0 (default {CRYPTONAS['lr']:g})")
    add("--weight-decay", type=float, default=None,
        help="weight decay of the networks trained from scratch, PyTorch "
             "convention (L2 of wd/2 on the kernels) (default "
             f"{DEFAULTS['weight_decay']:g})")
    add("--protocol", choices=sorted(RUNTIMES), default=None,
        help="PI protocol that prices a cost --budget, and the one the "
             "report prices (default: every calibrated one)")
    add("--network", default=None, metavar="lan|wan|RTT_MS,MBPS",
        help="the network of latencies: lan (RTT 1 ms, 1000 Mbit/s; "
             "default), wan (RTT 50 ms, 100 Mbit/s) or a round-trip time "
             "in ms and a bandwidth in Mbit/s, e.g. 20,300")
    add("--allow-unstable", action="store_true",
        help="export even a final model whose logits are non-finite on the "
             "test split or beyond 100x the teacher's on training images "
             "(default: stop with exit status 1, nothing exported)")
    add("--data-dir", default=None,
        help="dataset folder or .tar.gz archive (e.g. "
             "../shared/data/cifar10-images.tar.gz); default: "
             "tensorflow-datasets")
    add("--cache-dir", default=None,
        help="cache of decoded images (default ~/.cache/keras_autorep)")
    add("--subset", type=subset_argument, default=None,
        metavar="N_TRAIN,N_TEST",
        help="use a class-balanced sample of N_TRAIN train and N_TEST "
             "test images (--quick: 10000,2000; cryptonas 5000,1000)")
    add("--out", default="saved_models",
        help="base folder of the exports and of the working files "
             "(<out>/runs/, <out>/teachers/) (default saved_models)")
    add("--run-name", default=None,
        help="run folder and export name (default <dataset>_<model>_"
             "<budget>[_<method>][_<allocation>][_quick], cryptonas "
             "<dataset>_cryptonas_<budget>[_quick]); rerunning a name "
             "resumes it")
    add("--seed", type=int, default=0, help="random seed (default 0)")
    add("--devices", type=int, default=None,
        help="data-parallel training on this many devices, the batch size "
             "being the global one (default: all the accelerators, else one "
             "CPU); KERAS_BACKEND=jax uses keras.distribution.DataParallel, "
             "TensorFlow a MirroredStrategy")
    add("--wait", action="store_true",
        help="if another command works on the same run folder, wait for "
             "it to finish instead of stopping with an error")
    add("--checkpoint-every", type=int, default=None, metavar="STEPS",
        help="save the training state every STEPS optimizer steps too, not "
             "only at epoch ends (default 1000 for imagenet, else 0: epoch "
             "ends only); SIGTERM or SIGINT saves the step reached and "
             f"exits with status {128 + signal.SIGTERM} or "
             f"{128 + signal.SIGINT}; the same command resumes at that step")
    add("--strict-images", action="store_true",
        help="stop before training when image files of a streamed image "
             "tree do not decode, naming them (default: skip them, listed "
             "in the log and report.json); in-memory datasets always stop "
             "at such a file")
    streamed = dataset in STREAMED_DATASETS
    quick_model = (QUICK_STREAMED if streamed else QUICK_PRESET)["model"]
    add("--quick", action="store_true",
        help=f"CPU smoke preset: {quick_model}"
             + (f" at {QUICK_STREAMED['image_size']}x"
                f"{QUICK_STREAMED['image_size']} with "
                f"{QUICK_STREAMED['replacement']} replacements"
                if streamed else "")
             + ", 10k/2k images, "
             f"{QUICK_PRESET['teacher_epochs']}+{QUICK_PRESET['epochs']} "
             f"epochs, batch {QUICK_PRESET['batch_size']}, lr "
             f"{QUICK_PRESET['lr']:g} (cryptonas: 5k/1k images, 4 candidates "
             "of 1 epoch, 4 epochs for the best); explicit flags still win")


def _teacher_arguments(parser, dataset):
    """The flags of the teacher-based methods."""
    preset = DATASET_PRESETS.get(dataset, DATASET_PRESETS["cifar10"])
    group = parser.add_argument_group("autorep, snl and senet")
    add = group.add_argument
    add("--model", choices=sorted(MODELS), default=None,
        help=f"backbone (default {preset['model']}; with --quick "
             f"{QUICK_PRESET['model']}, or {QUICK_STREAMED['model']} for "
             "streamed datasets)")
    add("--activations", type=names_argument, default=None,
        metavar="NAME[,NAME...]",
        help="the activations whose elements AutoReP selects, each kept or "
             "replaced by a polynomial fitted to it: relu, relu6, "
             "leaky_relu, hard_sigmoid, hard_swish, silu, gelu, sigmoid "
             "(default: the model's, silu for the EfficientNets, else relu)")
    if dataset in STREAMED_DATASETS:
        add("--image-size", type=int, default=None,
            help="side of the square images the model sees: training "
                 "images are random-resized crops, test images center "
                 "crops (default: the model's ImageNet size, 260 for "
                 f"efficientnet_b2; {QUICK_STREAMED['image_size']} with "
                 "--quick)")
    add("--teacher", default=None,
        help="skip teacher training: a .keras model taking [0, 1] images "
             "(the student copies its architecture), a weights file "
             "(.weights.h5) of --model, or "
             f"'{IMAGENET_WEIGHTS}' for Keras's ImageNet weights of an "
             "EfficientNet --model (~/.keras/models/)")
    add("--teacher-epochs", type=int, default=None,
        help=f"teacher epochs (default {preset['teacher_epochs']})")
    add("--teacher-lr", type=float, default=None,
        help="teacher SGD learning rate, cosine decay to 0 "
             f"(default {DEFAULTS['teacher_lr']:g})")
    add("--lambda", dest="budget_weight", metavar="LAMBDA", type=float,
        default=None,
        help="autorep: weight of the budget loss (default "
             f"{preset['budget_weight']:g})")
    add("--quadratic-decay", type=float, default=None,
        help="autorep: L2 factor on the quadratic coefficients of the "
             "polynomials (default 0: none); a stability option")
    add("--max-quadratic", type=float, default=None,
        help="autorep: bound on |c2| of the polynomials after every step "
             "(default: none); a stability option that trades accuracy for "
             "outputs that stay finite off the training range")
    add("--range-penalty", type=float, default=None,
        help="autorep: weight of the penalty on polynomial inputs beyond "
             "the range each polynomial is fitted for (its input's running "
             f"mean +- 4 std; default {AUTOREP['range_penalty']:g}, 0: "
             "none)")
    add("--clip-range", type=float, default=None,
        help="autorep: in training, clip each polynomial's input to that "
             "range widened this many times, a safety net against "
             "overflows (inference never clips; default "
             f"{AUTOREP['clip_range']:g}, 0: none)")
    add("--brightness", type=float, default=None,
        help="autorep: brighten a random half of every training batch by "
             "factors up to this, beyond [0, 1] (default "
             f"{AUTOREP['brightness']:g}, 1: none)")
    add("--contrast", type=float, default=None,
        help="autorep: stretch the contrast of that half by factors up to "
             f"this (default {AUTOREP['contrast']:g}, 1: none)")
    add("--replacement", choices=REPLACEMENTS, default=None,
        help="what removed positions compute: poly2 (DaPa's quadratic; "
             "autorep's default), poly1 (its per-channel line, trained), "
             "identity (snl and senet's default), or auto: each site "
             "learns its form under a cost --budget. Lines and identities "
             "that keep no ReLU fold into the linear layer feeding them "
             "where that is exact, and cost nothing")
    add("--allocation", choices=ALLOCATIONS, default=None,
        help="per-layer split of the budget before the search: free (the "
             "method decides; default for autorep and snl), uniform, "
             "sensitivity (default for senet) or tuned (keras-tuner search "
             "on a validation split of the training images)")
    add("--finetune-epochs", type=int, default=None,
        help="fine-tuning epochs with the masks frozen once they landed on "
             "the budget (default: autorep a tenth of --epochs, snl and "
             f"senet --epochs; {QUICK_PRESET['finetune_epochs']} with "
             "--quick)")
    add("--tuner-trials", type=int, default=None,
        help="--allocation tuned: keras-tuner trials of one epoch each "
             f"(default {DEFAULTS['tuner_trials']}; "
             f"{QUICK_PRESET['tuner_trials']} with --quick)")


def _search_arguments(parser):
    """The flags of CryptoNAS."""
    group = parser.add_argument_group("cryptonas")
    add = group.add_argument
    add("--trials", type=int, default=None,
        help="candidates to examine, rejected ones included (default "
             f"{CRYPTONAS['trials']}; --quick 4)")
    add("--search-epochs", type=int, default=None,
        help="training epochs per candidate (default "
             f"{CRYPTONAS['search_epochs']}; --quick 1)")
    add("--depths", type=depths_argument, default=None,
        help="candidate ReLU layers per stage (default 1,2,3)")
    add("--stem-stride", type=int, default=None, choices=(1, 2, 4),
        help="stride of a linear stem conv before the first stage (default "
             "1: none); 2 or 4 divide the ReLUs per channel by 4 or 16, for "
             "budgets below the smallest full-resolution network")


def build_parser(dataset=None, method="autorep"):
    """The command line of a recipe: ``dataset`` fixed (e.g.
    ``recipes/cifar10.py``) or chosen with ``--dataset`` (``None``), and
    the default ``--method``."""
    name = dataset or method
    parser = argparse.ArgumentParser(
        prog=f"recipes/{name}.py",
        description=(
            "Train a model for private inference within --budget ReLUs and "
            "export it with a report: an all-ReLU teacher, then AutoReP, "
            "SNL or SENet (search, landing on the budget, fine-tuning, "
            "hardening), or a CryptoNAS network searched and trained from "
            "scratch."))
    _run_arguments(parser, dataset, method)
    _teacher_arguments(parser, dataset)
    _search_arguments(parser)
    return parser


def quick_notice(settings):
    """What ``--quick`` runs, in one line."""
    s = settings
    n_train, n_test = s.subset
    if not s.uses_teacher:
        return (f"Quick preset (--quick): at most {n_train:,} train / "
                f"{n_test:,} test images, {s.trials} candidates of "
                f"{s.search_epochs} epoch(s), {s.epochs} epochs for the "
                "best: a CPU smoke run, far below the accuracy of a full "
                "run.")
    teacher = f"{s.teacher_epochs} teacher + " if s.teacher is None else ""
    return (f"Quick preset (--quick): {s.model}, at most {n_train:,} "
            f"train / {n_test:,} test images, {teacher}{s.epochs} search + "
            f"{s.finetune_epochs} fine-tuning epochs: a CPU smoke run, far "
            "below the accuracy of the paper schedule.")


def main(argv=None, dataset=None, method="autorep"):
    """Command-line entry point of a recipe; returns the exit status.

    Parse, resolve and check (a ``UsageError`` exits with status 2 and a
    one-line message before any training), then run and summarise (a
    model that fails its sanity check exits with status 1, unpublished);
    the run folder is released at the end. SIGTERM or SIGINT saves the
    training step reached and exits with 128 + the signal's number and a
    one-line message (``preemption``). A keras-tuner worker runs its share
    of the search instead, then exits.
    """
    parser = build_parser(dataset, method)
    args = parser.parse_args(argv)
    with stop_on_signals():
        try:
            return _run(parser, args, dataset)
        except Preempted as e:
            print(f"{parser.prog}: {e.message()}; run the same command "
                  "again to resume", file=sys.stderr)
            return e.exit_status


def _run(parser, args, dataset):
    """``main``'s work once the command line is parsed."""
    try:
        settings = Settings.resolve(dataset, vars(args))
        if settings.quick:
            print(quick_notice(settings), flush=True)
        recipe = prepare(settings)
    except UsageError as e:
        parser.error(str(e))
    if tuner_role() == "worker":
        search_worker(recipe)
        print(f"keras-tuner worker {os.environ['KERASTUNER_TUNER_ID']}: "
              "no trial left; the chief finishes the run", flush=True)
        return 0
    try:
        report = run_recipe(recipe)
    except UnstableModelError as e:
        print(f"{parser.prog}: error: {e}", file=sys.stderr)
        return 1
    finally:
        recipe.run.folder.release()
    print_summary(report)
    return 0


def cryptonas_main(argv=None):
    """Command-line entry point of ``recipes/cryptonas.py``: ``main`` with
    ``--dataset`` and ``--method cryptonas`` by default."""
    return main(argv, method="cryptonas")
