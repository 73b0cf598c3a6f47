"""Recipe presets as plain data: paper schedules, the quick CPU preset, and
the names the recipes accept."""

# Paper-schedule defaults per dataset (AutoReP's released scripts).
DATASET_PRESETS = {
    "cifar10": dict(model="resnet18", epochs=200, teacher_epochs=400,
                    budget_weight=100.0),
    "cifar100": dict(model="resnet18", epochs=200, teacher_epochs=400,
                     budget_weight=100.0),
    "tiny_imagenet": dict(model="resnet18", epochs=80, teacher_epochs=200,
                          budget_weight=200.0),
    # Our schedule (the paper's ImageNet one is not published): a teacher
    # of EfficientNet's own length, a search as long as Tiny-ImageNet's.
    "imagenet": dict(model="efficientnet_b2", epochs=80, teacher_epochs=350,
                     budget_weight=200.0),
}
# Datasets streamed from their files at --image-size (default: the
# model's native size) instead of decoded into memory.
STREAMED_DATASETS = ("imagenet",)
DEFAULT_IMAGE_SIZE = 224
DEFAULTS = dict(batch_size=128, lr=1e-3, teacher_lr=0.1, weight_decay=5e-4)
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
)
# Quick preset of the streamed datasets: a small EfficientNet at 64x64.
QUICK_STREAMED = dict(model="efficientnet_b0", image_size=64)
QUICK_FINETUNE_EPOCHS = 2
# AutoReP's search is the whole paper schedule: its fine-tuning after the
# landing on the budget is a tenth of it (SNL and SENet: as long), at a
# quarter of the search's learning rate (on the quick demo 56.65 % against
# 55.25 % at the full rate and 56.45 % at a tenth).
AUTOREP_FINETUNE_FRACTION = 0.1
AUTOREP_FINETUNE_LR_FRACTION = 0.25
TUNER_TRIALS = 8
QUICK_TUNER_TRIALS = 3

METHODS = ("autorep", "snl", "senet")
ALLOCATIONS = ("free", "uniform", "sensitivity", "tuned")
# The allocation a method uses when --allocation is not given.
DEFAULT_ALLOCATION = {"autorep": "free", "snl": "free", "senet": "sensitivity"}
# Training phases after the allocation, per method (stage folder names).
PHASES = {"autorep": ("search", "finetune"), "snl": ("search", "finetune"),
          "senet": ("identify", "finetune")}
SENSITIVITY_STEPS = 20  # batches of training data for --allocation sensitivity
VALIDATION_FRACTION = 0.1  # of the training images, for tuned searches

CRYPTONAS_DEFAULTS = dict(subset=None, trials=20, search_epochs=10,
                          epochs=200, batch_size=128, lr=0.1,
                          weight_decay=5e-4, depths=(1, 2, 3), stem_stride=1)
CRYPTONAS_QUICK = dict(subset=(5_000, 1_000), trials=4, search_epochs=1,
                       epochs=4, batch_size=64)
# Names that cannot be run names: they are folders of <out>.
RESERVED_NAMES = ("runs", "teachers")
