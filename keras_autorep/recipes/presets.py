"""Recipe presets as plain data: paper schedules and the quick CPU presets.

What each method does with them (its phases, fine-tuning length, learning
rate plan) is the method's own (``keras_autorep.methods``).
"""

# Paper-schedule defaults per dataset (AutoReP's released scripts).
# checkpoint_every: steps between checkpoints within an epoch (0: at epoch
# ends only); an ImageNet epoch is about 10,000 steps of batch 128, and a
# checkpoint takes seconds (docs/recipes.md).
DATASET_PRESETS = {
    "cifar10": dict(model="resnet18", epochs=200, teacher_epochs=400,
                    budget_weight=100.0, checkpoint_every=0),
    "cifar100": dict(model="resnet18", epochs=200, teacher_epochs=400,
                     budget_weight=100.0, checkpoint_every=0),
    "tiny_imagenet": dict(model="resnet18", epochs=80, teacher_epochs=200,
                          budget_weight=200.0, checkpoint_every=0),
    # Our schedule (the paper's ImageNet one is not published): a teacher
    # of EfficientNet's own length, a search as long as Tiny-ImageNet's.
    "imagenet": dict(model="efficientnet_b2", epochs=80, teacher_epochs=350,
                     budget_weight=200.0, checkpoint_every=1000),
}
# Datasets streamed from their files at --image-size (default: the
# model's native size) instead of decoded into memory.
STREAMED_DATASETS = ("imagenet",)
DEFAULT_IMAGE_SIZE = 224
DEFAULTS = dict(batch_size=128, lr=1e-3, teacher_lr=0.1, weight_decay=5e-4,
                tuner_trials=8)
# Quick: batch 64 doubles the optimizer steps per image, and lr 4e-3 moves
# the indicators alpha (uniform in (0, 1) at the start, ~lr per Adam step)
# far enough for the ReLU count to reach the budget within the run.
QUICK_PRESET = dict(
    model="resnet_small",
    subset=(10_000, 2_000),
    epochs=4,
    teacher_epochs=4,
    batch_size=64,
    lr=4e-3,
    finetune_epochs=2,
    tuner_trials=3,
)
# Quick preset of the streamed datasets: a small EfficientNet at 64x64,
# with affine replacements: its stacks of SiLU-fitted quadratics give
# non-finite logits after so short a run (README, "ImageNet and
# EfficientNet-B2"); --replacement poly2 is the paper's form.
QUICK_STREAMED = dict(model="efficientnet_b0", image_size=64,
                      replacement="poly1")
# Per-method presets, over the dataset's (paper schedule, then --quick).
# AutoReP's range control (README, "Stability options"): on the quick demo
# it keeps the logits of 2x brighter test images below 10 for 0.35 points
# of top-1.
METHOD_PRESETS = {
    "autorep": dict(range_penalty=3.0, clip_range=1.0, brightness=2.5,
                    contrast=1.5),
    "cryptonas": dict(trials=20, search_epochs=10, epochs=200, lr=0.1,
                      depths=(1, 2, 3), stem_stride=1),
}
METHOD_QUICK = {
    "cryptonas": dict(subset=(5_000, 1_000), trials=4, search_epochs=1,
                      epochs=4),
}
SENSITIVITY_STEPS = 20  # batches of training data for --allocation sensitivity
VALIDATION_FRACTION = 0.1  # of the training images, for tuned searches
# Names that cannot be run names: they are folders of <out>.
RESERVED_NAMES = ("runs", "teachers")
