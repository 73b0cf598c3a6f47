"""The price of selectors and hardened sites against the plain model.

Prints one table of ratios, each measured *interleaved* in one process (A,
B, A, B, ... rounds; process CPU time; the median of the rounds), so that
load from other jobs hits both sides alike:

* a training step of ``replace_relus(model)`` with the budget loss
  (``BudgetTrainer``) against the same step of the plain model, after the
  DaPa refit phase (the first 500 steps of a run, which also update the
  running statistics; a full run has tens of thousands);
* inference of the hardened model (10 % and 2.6 % of the ReLUs kept)
  against the plain one: Keras ``predict_on_batch``, the exported
  SavedModel's ``serving_default`` signature and its ``serving_xla``
  signature (against the plain model's ``serving_default``; TensorFlow),
  and a compiled function;
* the peak resident memory of a training step with selectors against the
  plain one (each in a fresh subprocess: ``VmHWM``).

The JAX rows run in a subprocess with ``KERAS_BACKEND=jax``.

    python benchmarks/overhead.py                 # the whole table
    python benchmarks/overhead.py --rounds 3 --quick
"""

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time

import keras
import numpy as np

from keras_autorep import BudgetTrainer, harden, replace_relus
from keras_autorep.architectures import get_model
from keras_autorep.graph import selectors, set_masks, top_masks

LOSS = keras.losses.SparseCategoricalCrossentropy(from_logits=True)
GOALS = {
    "train": 1.3, "train_resnet18": 1.2, "memory": 1.2,
    "infer_b1": 1.1, "infer_batch": 1.3, "compiled_b1": 1.1,
    "compiled_batch": 1.15,
}


def cpu_seconds(step, repeats):
    """Process CPU time of ``repeats`` calls of ``step``."""
    start = time.process_time()
    for _ in range(repeats):
        step()
    return (time.process_time() - start) / repeats


def interleaved_ratio(step_a, step_b, rounds, repeats):
    """``median(B / A)`` over ``rounds`` interleaved rounds (after one
    warm-up call of each)."""
    step_a(), step_b()
    ratios, times = [], []
    for _ in range(rounds):
        a = cpu_seconds(step_a, repeats)
        b = cpu_seconds(step_b, repeats)
        ratios.append(b / a)
        times.append((a, b))
    a, b = (statistics.median(t) for t in zip(*times))
    return statistics.median(ratios), a, b


def model_and_data(name, batch, seed=0):
    keras.utils.set_random_seed(seed)
    model = get_model(name, input_shape=(32, 32, 3), num_classes=10)
    rng = np.random.default_rng(seed)
    x = rng.random((batch, 32, 32, 3), dtype=np.float32)
    y = rng.integers(0, 10, batch)
    return model, x, y


def hardened_copy(model, fraction, seed=0):
    """``model`` hardened with ``fraction`` of its ReLUs kept at random."""
    student = replace_relus(model)
    rng = np.random.default_rng(seed)
    scores = {site.name: rng.random(tuple(site.mask.shape))
              for site in selectors(student)}
    budget = int(fraction * sum(s.size for s in scores.values()))
    set_masks(student, top_masks(student, scores, budget=budget))
    return harden(student, budget)


def selector_trainer(plain):
    """A ``BudgetTrainer`` of ``plain``'s selectors, past the refit phase."""
    return BudgetTrainer(replace_relus(plain, refit_steps=0), "10%",
                         budget_weight=10.0)


def train_step_ratio(name, batch, rounds, repeats):
    plain, x, y = model_and_data(name, batch)
    plain.compile(keras.optimizers.Adam(1e-3), LOSS)
    trainer = selector_trainer(plain)
    trainer.compile(keras.optimizers.Adam(1e-3), LOSS)
    return interleaved_ratio(lambda: plain.train_on_batch(x, y),
                             lambda: trainer.train_on_batch(x, y),
                             rounds, repeats)


def inference_ratios(name, batches, fractions, rounds, repeats):
    """Rows for ``predict_on_batch``, the SavedModel signature and a
    compiled function."""
    plain, _, _ = model_and_data(name, 1)
    rows = []
    for fraction in fractions:
        hardened = hardened_copy(plain, fraction)
        for batch in batches:
            x = np.random.default_rng(1).random(
                (batch, 32, 32, 3), dtype=np.float32)
            ratio = interleaved_ratio(
                lambda: plain.predict_on_batch(x),
                lambda: hardened.predict_on_batch(x), rounds, repeats)
            rows.append((f"{name} predict_on_batch, {fraction:.1%} kept",
                         batch, *ratio,
                         GOALS["infer_b1" if batch == 1 else "infer_batch"]))
            if keras.backend.backend() != "tensorflow":
                continue
            goal = GOALS["infer_b1" if batch == 1 else "infer_batch"]
            plain_serving = _serving(plain, x)
            for signature in ("serving_default", "serving_xla"):
                ratio = interleaved_ratio(
                    plain_serving, _serving(hardened, x, signature), rounds,
                    repeats)
                rows.append((f"{name} SavedModel {signature}, "
                             f"{fraction:.1%} kept", batch, *ratio, goal))
            ratio = interleaved_ratio(*[_compiled(m, x) for m in
                                        (plain, hardened)], rounds, repeats)
            rows.append((f"{name} compiled function, {fraction:.1%} kept",
                         batch, *ratio, GOALS["compiled_b1" if batch == 1
                                              else "compiled_batch"]))
    return rows


def _serving(model, x, signature="serving_default"):
    """A call of a signature of the model's exported SavedModel."""
    import tensorflow as tf

    from keras_autorep.export import export_saved_model

    folder = export_saved_model(model, tempfile.mkdtemp(), "m")
    serve = tf.saved_model.load(str(folder)).signatures[signature]
    pixels = tf.constant(x * 255.0)
    return lambda: serve(image=pixels)


def _compiled(model, x):
    import tensorflow as tf

    function = tf.function(lambda t: model(t, training=False))
    tensor = tf.constant(x)
    return lambda: function(tensor)


def peak_memory_ratio(name, batch):
    """Peak RSS of a training step with selectors over the plain one, each
    measured in a fresh subprocess."""
    peaks = {}
    for kind in ("plain", "selectors"):
        out = subprocess.run(
            [sys.executable, __file__, "--memory-probe", kind, name,
             str(batch)], capture_output=True, text=True, check=True)
        peaks[kind] = json.loads(out.stdout.strip().splitlines()[-1])
    return peaks["selectors"] / peaks["plain"], peaks["plain"], \
        peaks["selectors"]


def memory_probe(kind, name, batch):
    plain, x, y = model_and_data(name, batch)
    model = plain
    if kind == "selectors":
        model = selector_trainer(plain)
    model.compile(keras.optimizers.Adam(1e-3), LOSS)
    for _ in range(3):
        model.train_on_batch(x, y)
    print(json.dumps(peak_rss_mib()))


def peak_rss_mib():
    """This process's peak resident memory. ``VmHWM`` belongs to the
    process image (``ru_maxrss`` would carry the parent's peak over
    ``fork`` + ``exec``)."""
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024.0
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def backend_rows(args):
    backend = keras.backend.backend()
    rows = []
    resnet18 = args.resnet18_batches if backend == "tensorflow" else ()
    for name, batches in (("resnet_small", args.small_batches),
                          ("resnet18", resnet18)):
        goal = GOALS["train" if name == "resnet_small" else "train_resnet18"]
        for batch in batches:
            rows.append((f"{name} train step, selectors + budget loss",
                         batch, *train_step_ratio(name, batch, args.rounds,
                                                  args.repeats), goal))
    rows += inference_ratios("resnet_small", args.small_inference,
                             (0.1, 0.026), args.rounds, args.repeats)
    if backend == "tensorflow":
        rows += inference_ratios("resnet18", args.resnet18_inference,
                                 (0.026,), args.rounds, args.repeats)
    return [(backend, *row) for row in rows]


def print_table(rows, memory):
    print(f"load average {os.getloadavg()[0]:.2f} (1 min); process CPU "
          "time, median of interleaved rounds")
    print("| backend | what | batch | ratio | plain ms | other ms | goal |")
    print("|---|---|---:|---:|---:|---:|---:|")
    for backend, what, batch, ratio, a, b, goal in rows:
        mark = "ok" if ratio <= goal else "over"
        print(f"| {backend} | {what} | {batch} | {ratio:.2f}x | "
              f"{a * 1e3:.1f} | {b * 1e3:.1f} | <= {goal}x {mark} |")
    if memory:
        ratio, plain, selectors = memory
        mark = "ok" if ratio <= GOALS["memory"] else "over"
        print(f"| tensorflow | resnet18 train step peak memory (MiB) | 32 | "
              f"{ratio:.2f}x | {plain:.0f} | {selectors:.0f} | <= "
              f"{GOALS['memory']}x {mark} |")


def parse_args(argv):
    parser = argparse.ArgumentParser(
        prog="benchmarks/overhead.py", description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--quick", action="store_true",
                        help="resnet_small only, small batches")
    parser.add_argument("--rows-json", action="store_true",
                        help=argparse.SUPPRESS)  # the JAX subprocess
    parser.add_argument("--memory-probe", nargs=3, default=None,
                        help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    args.small_batches = (128,) if args.quick else (32, 128)
    args.resnet18_batches = () if args.quick else (32,)
    args.small_inference = (1, 128)
    args.resnet18_inference = () if args.quick else (1, 32)
    return args


def main(argv=None):
    args = parse_args(argv)
    if args.memory_probe:
        kind, name, batch = args.memory_probe
        memory_probe(kind, name, int(batch))
        return
    rows = backend_rows(args)
    if args.rows_json:
        print(json.dumps(rows))
        return
    if keras.backend.backend() == "tensorflow":
        command = [sys.executable, __file__, "--rows-json", "--rounds",
                   str(args.rounds), "--repeats", str(args.repeats)]
        if args.quick:
            command.append("--quick")
        out = subprocess.run(command, capture_output=True, text=True,
                             check=True,
                             env={**os.environ, "KERAS_BACKEND": "jax"})
        rows += [tuple(row) for row in
                 json.loads(out.stdout.strip().splitlines()[-1])]
    memory = None if args.quick else peak_memory_ratio("resnet18", 32)
    print_table(rows, memory)


if __name__ == "__main__":
    main()
