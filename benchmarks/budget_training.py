"""Budget training on real CIFAR-10: ReLU count per epoch, accuracy, step time.

Trains a small Sequential CNN with fused ReLUs (the all-ReLU teacher), then
the same network converted with ``replace_relus`` under a budget of 10% of its
ReLUs with ``BudgetTrainer``, hardens it and prints a table. Measures the
training step time with and without selectors.

    python benchmarks/budget_training.py --data-dir ../shared/data/cifar10-images.tar.gz
"""

import argparse
import time

import keras
import numpy as np

from keras_autorep import BudgetTrainer, count_relus, harden, replace_relus
from keras_autorep.data import load_dataset, normalization_layer


class StepTimer(keras.callbacks.Callback):
    """Median wall time of a training step (first epoch's compile excluded)."""

    def __init__(self):
        super().__init__()
        self.times = []

    def on_train_batch_begin(self, batch, logs=None):
        self._start = time.perf_counter()

    def on_train_batch_end(self, batch, logs=None):
        self.times.append(time.perf_counter() - self._start)

    def median_ms(self):
        return 1000 * float(np.median(self.times[len(self.times) // 4 :]))


def cnn(info):
    return keras.Sequential(
        [
            keras.Input(info.image_shape),
            normalization_layer(info),
            keras.layers.Conv2D(32, 3, padding="same", activation="relu"),
            keras.layers.MaxPooling2D(),
            keras.layers.Conv2D(64, 3, padding="same", activation="relu"),
            keras.layers.MaxPooling2D(),
            keras.layers.Conv2D(64, 3, padding="same", activation="relu"),
            keras.layers.GlobalAveragePooling2D(),
            keras.layers.Dense(info.num_classes),
        ],
        name="cnn",
    )


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", required=True)
    parser.add_argument("--train", type=int, default=10000)
    parser.add_argument("--epochs", type=int, default=4)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--budget", default="10%")
    args = parser.parse_args()

    keras.utils.set_random_seed(0)
    (x, y), (xt, yt), info = load_dataset(
        "cifar10", data_dir=args.data_dir, subset=(args.train, 2000)
    )
    x, xt = x.astype("float32") / 255, xt.astype("float32") / 255
    loss = keras.losses.SparseCategoricalCrossentropy(from_logits=True)

    teacher = cnn(info)
    teacher.compile(keras.optimizers.Adam(1e-3), loss, metrics=["accuracy"])
    plain_timer = StepTimer()
    teacher.fit(x, y, batch_size=args.batch_size, epochs=args.epochs,
                callbacks=[plain_timer], verbose=2)
    teacher_accuracy = teacher.evaluate(xt, yt, verbose=0)[1]

    student = replace_relus(teacher)
    trainer = BudgetTrainer(student, budget=args.budget, teacher=teacher,
                            budget_weight=100.0)
    trainer.compile(keras.optimizers.Adam(5e-3), loss, metrics=["accuracy"])
    selector_timer = StepTimer()
    history = trainer.fit(x, y, batch_size=args.batch_size, epochs=args.epochs,
                          validation_data=(xt, yt), callbacks=[selector_timer],
                          verbose=2)
    selector_predictions = student.predict(xt, verbose=0)
    hardened = harden(student, budget=trainer.budget)
    hardened_predictions = hardened.predict(xt, verbose=0)
    hardened_accuracy = float(np.mean(hardened_predictions.argmax(1) == yt))
    steps = int(np.ceil(len(x) / args.batch_size))

    total = count_relus(teacher).total
    print(f"\nall-ReLU CNN: {total:,} ReLUs, budget {trainer.budget:,} "
          f"({args.budget}), {steps} steps/epoch, batch {args.batch_size}")
    print(f"{'epoch':>5} {'relu_count':>11} {'train_acc':>9} {'val_acc':>8}")
    for epoch, (count, acc, val) in enumerate(zip(
            history.history["relu_count"], history.history["accuracy"],
            history.history["val_accuracy"]), 1):
        print(f"{epoch:>5} {int(count):>11,} {acc:>9.4f} {val:>8.4f}")
    print(f"teacher test accuracy            {teacher_accuracy:.4f}")
    print(f"hardened test accuracy           {hardened_accuracy:.4f}")
    print(f"hardened kept ReLUs              {count_relus(hardened).kept:,} "
          f"(<= {trainer.budget:,})")
    print(f"max |hardened - selector| logits "
          f"{np.abs(hardened_predictions - selector_predictions).max():.2e}")
    print(f"top-1 agreement with selectors   "
          f"{np.mean(hardened_predictions.argmax(1) == selector_predictions.argmax(1)):.4f}")
    print(f"step time, plain CNN             {plain_timer.median_ms():.1f} ms")
    print(f"step time, with selectors + KD   {selector_timer.median_ms():.1f} ms")


if __name__ == "__main__":
    main()
