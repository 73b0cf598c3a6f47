"""Command lines of the recipes (``recipes/*.py`` call ``main``).

Bad input exits with status 2 and a one-line message before any training.
"""

import argparse
import os
import sys

from keras_autorep.adapters.keras_tuner_roles import tuner_role
from keras_autorep.architectures import MODELS
from keras_autorep.budgets import check_budget_text, parse_budget
from keras_autorep.export import UnstableModelError
from keras_autorep.pi import RUNTIMES
from keras_autorep.recipes.allocation import search_worker
from keras_autorep.recipes.cryptonas import (
    prepare_cryptonas,
    print_cryptonas_summary,
    run_cryptonas,
)
from keras_autorep.recipes.cryptonas import (
    search_worker as cryptonas_search_worker,
)
from keras_autorep.recipes.presets import (
    ALLOCATIONS,
    CRYPTONAS_DEFAULTS,
    CRYPTONAS_QUICK,
    DATASET_PRESETS,
    DEFAULTS,
    METHODS,
    QUICK_FINETUNE_EPOCHS,
    QUICK_PRESET,
    QUICK_STREAMED,
    QUICK_TUNER_TRIALS,
    STREAMED_DATASETS,
    TUNER_TRIALS,
)
from keras_autorep.recipes.settings import (
    IMAGENET_WEIGHTS,
    CryptoNASSettings,
    Settings,
    UsageError,
)
from keras_autorep.recipes.stages import prepare, print_summary, run_recipe
from keras_autorep.training.schedules import FINAL_LR


PROTOCOLS = sorted(RUNTIMES)


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


def add_run_arguments(parser, quick_subset, default_run_name):
    """The data, output, run-name and seed flags every recipe shares."""
    add = parser.add_argument
    add("--data-dir", default=None,
        help="dataset folder or .tar.gz archive (e.g. "
             "../shared/data/cifar10-images.tar.gz); default: "
             "tensorflow-datasets")
    add("--cache-dir", default=None,
        help="cache of decoded images (default ~/.cache/keras_autorep)")
    add("--subset", type=subset_argument, default=None,
        metavar="N_TRAIN,N_TEST",
        help="use a class-balanced sample of N_TRAIN train and N_TEST "
             f"test images (--quick: {quick_subset[0]},{quick_subset[1]})")
    add("--out", default="saved_models",
        help="base folder of the exports and of the working files "
             "(<out>/runs/, <out>/teachers/) (default saved_models)")
    add("--run-name", default=None,
        help=f"run folder and export name (default {default_run_name}); "
             "rerunning a name resumes it")
    add("--seed", type=int, default=0, help="random seed (default 0)")
    add("--devices", type=int, default=None,
        help="data-parallel training on this many devices, the batch size "
             "being the global one (default: all the accelerators, else one "
             "CPU); KERAS_BACKEND=jax uses keras.distribution.DataParallel, "
             "TensorFlow a MirroredStrategy")
    add("--wait", action="store_true",
        help="if another command works on the same run folder, wait for "
             "it to finish instead of stopping with an error")


def build_parser(dataset):
    """The command line of the ``dataset`` recipe."""
    preset = DATASET_PRESETS[dataset]
    streamed = dataset in STREAMED_DATASETS
    quick_model = QUICK_STREAMED["model"] if streamed else QUICK_PRESET[
        "model"]
    parser = argparse.ArgumentParser(
        prog=f"recipes/{dataset}.py",
        description=(
            f"AutoReP on {dataset}: train (or load) an all-ReLU teacher, "
            "search which ReLUs to keep within --budget, harden, evaluate "
            "and export the model with a report."),
    )
    add = parser.add_argument
    add("--budget", required=True, type=budget_argument,
        help="ReLU budget: 12900, 12.9k, 1.2M, a percentage of the "
             "model's ReLUs such as 2.5%%, or a reduction factor such as "
             "176.1x (the model's ReLUs / 176.1); 0 keeps no ReLU")
    add("--model", choices=sorted(MODELS), default=None,
        help=f"backbone (default {preset['model']}; {quick_model} with "
             "--quick)")
    add("--activations", type=names_argument, default=None,
        metavar="NAME[,NAME...]",
        help="the activations whose elements AutoReP selects, each kept or "
             "replaced by a polynomial fitted to it: relu, relu6, "
             "leaky_relu, hard_sigmoid, hard_swish, silu, gelu, sigmoid "
             "(default: the model's, silu for the EfficientNets, else relu)")
    if streamed:
        add("--image-size", type=int, default=None,
            help="side of the square images the model sees: training "
                 "images are random-resized crops, test images center "
                 "crops (default: the model's ImageNet size, 260 for "
                 f"efficientnet_b2; {QUICK_STREAMED['image_size']} with "
                 "--quick)")
    add("--epochs", type=int, default=None,
        help=f"search epochs (default {preset['epochs']})")
    add("--teacher-epochs", type=int, default=None,
        help=f"teacher epochs (default {preset['teacher_epochs']})")
    add("--batch-size", type=int, default=None,
        help=f"batch size (default {DEFAULTS['batch_size']})")
    add("--lr", type=float, default=None,
        help=f"search Adam learning rate, cosine decay to {FINAL_LR:g} "
             f"(default {DEFAULTS['lr']:g})")
    add("--teacher-lr", type=float, default=None,
        help="teacher SGD learning rate, cosine decay to 0 "
             f"(default {DEFAULTS['teacher_lr']:g})")
    add("--weight-decay", type=float, default=None,
        help="teacher weight decay, PyTorch convention (L2 of wd/2 on the "
             f"kernels) (default {DEFAULTS['weight_decay']:g})")
    add("--lambda", dest="budget_weight", metavar="LAMBDA", type=float,
        default=None,
        help="weight of the budget loss (default "
             f"{preset['budget_weight']:g})")
    add("--quadratic-decay", type=float, default=None,
        help="autorep: L2 factor on the quadratic coefficients of the "
             "polynomials (default 0: none); a stability option")
    add("--max-quadratic", type=float, default=None,
        help="autorep: bound on |c2| of the polynomials after every step "
             "(default: none); a stability option that trades accuracy for "
             "outputs that stay finite off the training range")
    add("--method", choices=METHODS, default="autorep",
        help="how ReLUs are removed: autorep (default; ReLU or polynomial "
             "per position), snl (L1 masks, linear in place of ReLU) or "
             "senet (sensitivity, mask identification, fine-tuning)")
    add("--allocation", choices=ALLOCATIONS, default=None,
        help="per-layer split of the budget before the search: free (the "
             "method decides; default for autorep and snl), uniform, "
             "sensitivity (default for senet) or tuned (keras-tuner search "
             "on a validation split of the training images)")
    add("--finetune-epochs", type=int, default=None,
        help="fine-tuning epochs with the masks frozen once they landed on "
             "the budget, after the search/identify phase of --epochs "
             f"(default: autorep a tenth of --epochs, snl and senet "
             f"--epochs; {QUICK_FINETUNE_EPOCHS} with --quick)")
    add("--allow-unstable", action="store_true",
        help="export even a final model whose logits are non-finite on the "
             "test split or beyond 100x the teacher's on training images "
             "(default: stop with exit status 1, nothing exported)")
    add("--tuner-trials", type=int, default=None,
        help="--allocation tuned: keras-tuner trials of one epoch each "
             f"(default {TUNER_TRIALS}; {QUICK_TUNER_TRIALS} with --quick)")
    add("--protocol", choices=PROTOCOLS, default=None,
        help="PI protocol to report costs for (default: all calibrated) "
             "and to pick, per site, the cheaper polynomial (degree 1 "
             "instead of 2) where that costs no accuracy")
    add_run_arguments(parser, quick_subset=QUICK_PRESET["subset"],
                      default_run_name="<dataset>_<model>_<budget>[_<method>]"
                                       "[_<allocation>][_quick]")
    add("--teacher", default=None,
        help="skip teacher training: a .keras model taking [0, 1] images "
             "(the student copies its architecture), a weights file "
             "(.weights.h5) of --model, or "
             f"'{IMAGENET_WEIGHTS}' for Keras's ImageNet weights of an "
             "EfficientNet --model (~/.keras/models/)")
    add("--quick", action="store_true",
        help=f"CPU smoke preset: {quick_model}"
             + (f" at {QUICK_STREAMED['image_size']}x"
                f"{QUICK_STREAMED['image_size']}" if streamed else "")
             + ", 10k/2k images, "
             f"{QUICK_PRESET['teacher_epochs']}+{QUICK_PRESET['epochs']} "
             f"epochs, batch {QUICK_PRESET['batch_size']}, lr "
             f"{QUICK_PRESET['lr']:g}; explicit flags still win")
    return parser


def budget_count(text):
    """argparse type: a ReLU count (a percentage or a reduction factor has
    no reference model)."""
    try:
        if text.strip().endswith("%"):
            raise ValueError
        return parse_budget(text)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"invalid ReLU budget {text!r}: expected a count like 86000, 86k "
            "or 1.2M (CryptoNAS sizes the network from it; there is no "
            "model to take a percentage or a reduction factor of)") from None


def depths_argument(text):
    """argparse type: comma-separated positive depths, e.g. ``1,2,3``."""
    parts = [p.strip() for p in text.split(",")]
    if not all(p.isdigit() and int(p) > 0 for p in parts):
        raise argparse.ArgumentTypeError(
            f"expected positive integers like 1,2,3, got {text!r}")
    return tuple(sorted({int(p) for p in parts}))


def build_cryptonas_parser():
    """The command line of ``recipes/cryptonas.py``."""
    parser = argparse.ArgumentParser(
        prog="recipes/cryptonas.py",
        description=(
            "CryptoNAS: search a ReLU-balanced network within --budget "
            "(depth, width multiplier, skip connections), train the best one "
            "and export it with a report."))
    add = parser.add_argument
    add("--budget", required=True, type=budget_count,
        help="ReLU budget: 86000, 86k or 1.2M")
    add("--dataset", choices=sorted(set(DATASET_PRESETS)
                                    - set(STREAMED_DATASETS)),
        default="cifar10",
        help="dataset (default cifar10)")
    add("--trials", type=int, default=None,
        help=f"candidates to examine, rejected ones included (default "
             f"{CRYPTONAS_DEFAULTS['trials']}; --quick "
             f"{CRYPTONAS_QUICK['trials']})")
    add("--search-epochs", type=int, default=None,
        help=f"training epochs per candidate (default "
             f"{CRYPTONAS_DEFAULTS['search_epochs']}; --quick "
             f"{CRYPTONAS_QUICK['search_epochs']})")
    add("--epochs", type=int, default=None,
        help=f"training epochs of the best candidate (default "
             f"{CRYPTONAS_DEFAULTS['epochs']}; --quick "
             f"{CRYPTONAS_QUICK['epochs']})")
    add("--depths", type=depths_argument, default=None,
        help="candidate ReLU layers per stage (default 1,2,3)")
    add("--stem-stride", type=int, default=None, choices=(1, 2, 4),
        help="stride of a linear stem conv before the first stage (default "
             "1: none); 2 or 4 divide the ReLUs per channel by 4 or 16, for "
             "budgets below the smallest full-resolution network")
    add("--batch-size", type=int, default=None,
        help=f"batch size (default {CRYPTONAS_DEFAULTS['batch_size']}; "
             "--quick "
             f"{CRYPTONAS_QUICK['batch_size']})")
    add("--lr", type=float, default=None,
        help=f"SGD learning rate, cosine decay to 0 (default "
             f"{CRYPTONAS_DEFAULTS['lr']:g})")
    add("--weight-decay", type=float, default=None,
        help="weight decay, PyTorch convention (L2 of wd/2 on the kernels) "
             f"(default {CRYPTONAS_DEFAULTS['weight_decay']:g})")
    add_run_arguments(parser, quick_subset=CRYPTONAS_QUICK["subset"],
                      default_run_name="<dataset>_cryptonas_<budget>[_quick]")
    add("--quick", action="store_true",
        help="CPU smoke preset: 5k/1k images, 4 candidates of 1 epoch, 4 "
             "epochs for the best, batch 64; explicit flags still win")
    return parser


def _run(parser, argv, resolve, quick_notice, prepare_run, run, summarize,
         search_worker):
    """Parse, resolve and check (a ``UsageError`` exits with status 2 and a
    one-line message before any training), then run and summarise (a model
    that fails its sanity check exits with status 1, unpublished); the run
    folder is released at the end. A keras-tuner worker runs
    ``search_worker`` instead: its share of the search, then it exits."""
    args = parser.parse_args(argv)
    try:
        settings = resolve(vars(args))
        if settings.quick:
            print(quick_notice(settings), flush=True)
        recipe = prepare_run(settings)
    except UsageError as e:
        parser.error(str(e))
    if tuner_role() == "worker":
        search_worker(recipe)
        print(f"keras-tuner worker {os.environ['KERASTUNER_TUNER_ID']}: "
              "no trial left; the chief finishes the run", flush=True)
        return 0
    try:
        report = run(recipe)
    except UnstableModelError as e:
        print(f"{parser.prog}: error: {e}", file=sys.stderr)
        return 1
    finally:
        recipe.run.folder.release()
    summarize(report)
    return 0


def main(argv=None, dataset="cifar10"):
    """Command-line entry point of the ``dataset`` recipe; returns 0."""

    def quick_notice(s):
        n_train, n_test = s.subset
        teacher = (f"{s.teacher_epochs} teacher + " if s.teacher is None
                   else "")
        return (f"Quick preset (--quick): {s.model}, at most {n_train:,} "
                f"train / {n_test:,} test images, {teacher}"
                f"{s.epochs} search + {s.finetune_epochs} fine-tuning "
                "epochs: a CPU smoke run, far below the accuracy of the "
                "paper schedule.")

    return _run(build_parser(dataset), argv,
                lambda given: Settings.resolve(dataset, given), quick_notice,
                prepare, run_recipe, print_summary, search_worker)


def cryptonas_main(argv=None):
    """Command-line entry point of ``recipes/cryptonas.py``; returns 0."""

    def quick_notice(s):
        n_train, n_test = s.subset
        return (f"Quick preset (--quick): at most {n_train:,} train / "
                f"{n_test:,} test images, {s.trials} candidates of "
                f"{s.search_epochs} epoch(s), {s.epochs} epochs for the "
                "best: a CPU smoke run, far below the accuracy of a full "
                "run.")

    return _run(build_cryptonas_parser(), argv, CryptoNASSettings.resolve,
                quick_notice, prepare_cryptonas, run_cryptonas,
                print_cryptonas_summary, cryptonas_search_worker)
