"""The price of selectors and hardened sites against the plain model.

Prints one table of ratios, each measured *interleaved* in one process (A,
B, A, B, ... rounds; process CPU time; the median of the rounds), so that
load from other jobs hits both sides alike:

* a training step of ``replace_relus(model)`` with the budget loss
  (``BudgetTrainer``) against the same step of the plain model, after the
  DaPa refit phase (the first 500 steps of a run, which also update the
  running statistics; a full run has tens of thousands);
* the plain model's ``predict_on_batch`` through XLA against TensorFlow's
  kernels (the share of the hardened rows that is XLA's);
* inference of the hardened model (10 % and 2.6 % of the ReLUs kept;
  ``harden(xla="model")``, compiled as a whole by XLA, and
  ``xla="sites"``, each site compiled alone while the convolutions keep
  TensorFlow's kernels) against the plain one: Keras
  ``predict_on_batch``, the exported SavedModel's ``serving_default``
  signature and its ``serving_xla`` signature (against the plain model's
  ``serving_default``; TensorFlow), and a compiled function;
* the peak resident memory of a training step with selectors against the
  plain one (each in a fresh subprocess: ``VmHWM``; ``--runs`` pairs).

Further rows harden with the other replacement forms (``poly1``,
``identity``), and with no ReLU kept: identities compute nothing and lines
after a convolution fold into it, so such a model computes less than the
plain one.

Each ratio is measured ``--runs`` times (3) and printed as the median with
its spread. CPU-time ratios shift on a busy machine (towards the side that
uses fewer threads), so every row also records the 1-minute load average
before and after it and the share of the machine's CPU that other
processes used while it ran (``/proc/stat`` less this process's own time).
The script waits for that share to fall below ``--max-busy`` before it
starts, refuses to run on a busier machine (exit 2) unless ``--allow-busy``
is given, and marks rows measured above it.

The JAX rows run in a subprocess with ``KERAS_BACKEND=jax``.

    python benchmarks/overhead.py                 # the whole table
    python benchmarks/overhead.py --rounds 3 --quick
"""

import argparse
import gc
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
from keras_autorep.graph import copy_weights, selectors, set_masks, top_masks

LOSS = keras.losses.SparseCategoricalCrossentropy(from_logits=True)
GOALS = {
    "train": 1.3, "train_resnet18": 1.2, "memory": 1.2,
    "infer_b1": 1.1, "infer_batch": 1.2,
    "serving_xla_b1": 1.1, "serving_xla_batch": 1.2,
    "serving_default_b1": 1.5, "serving_default_batch": 1.5,
    "compiled_b1": 1.1, "compiled_batch": 1.15,
    "folded": 1.0,  # every removed position folded: less work than plain
}


def cpu_seconds(step, repeats):
    """Process CPU time of ``repeats`` calls of ``step``."""
    start = time.process_time()
    for _ in range(repeats):
        step()
    return (time.process_time() - start) / repeats


def busy_jiffies():
    """The machine's busy CPU time so far, in clock ticks (``/proc/stat``:
    all but idle and I/O wait)."""
    with open("/proc/stat") as stat:
        values = [int(v) for v in stat.readline().split()[1:]]
    return sum(values) - values[3] - values[4]


class Load:
    """What else ran on the machine while a measurement did: the share of
    all cores' time used by other processes, and the 1-minute load average
    before and after."""

    def __enter__(self):
        self.load_before = os.getloadavg()[0]
        self.wall = time.monotonic()
        self.own = sum(os.times()[:2])
        self.busy = busy_jiffies()
        return self

    def __exit__(self, *exc):
        ticks = os.sysconf("SC_CLK_TCK")
        wall = max(time.monotonic() - self.wall, 1e-9)
        other = ((busy_jiffies() - self.busy) / ticks
                 - (sum(os.times()[:2]) - self.own))
        self.other_share = max(0.0, other / wall / os.cpu_count())
        self.load_after = os.getloadavg()[0]
        return False


def interleaved_ratio(step_a, step_b, rounds, repeats):
    """``median(B / A)`` over ``rounds`` interleaved rounds (after one
    warm-up call of each), with the median times of A and B."""
    step_a(), step_b()
    ratios, times = [], []
    for _ in range(rounds):
        a = cpu_seconds(step_a, repeats)
        b = cpu_seconds(step_b, repeats)
        ratios.append(b / a)
        times.append((a, b))
    a, b = (statistics.median(t) for t in zip(*times))
    return statistics.median(ratios), a, b


def measured(step_a, step_b, args):
    """One table row's figures: ``interleaved_ratio`` run ``args.runs``
    times; the median ratio, its lowest and highest, the median times and
    the load while it ran."""
    with Load() as load:
        runs = [interleaved_ratio(step_a, step_b, args.rounds, args.repeats)
                for _ in range(args.runs)]
    ratios = [run[0] for run in runs]
    a, b = (statistics.median(t) for t in zip(*[run[1:] for run in runs]))
    return dict(ratio=statistics.median(ratios), low=min(ratios),
                high=max(ratios), plain_s=a, other_s=b,
                load_before=load.load_before, load_after=load.load_after,
                other_share=load.other_share)


def wait_until_idle(args):
    """Wait up to ``args.wait`` seconds for other processes to use less
    than ``args.max_busy`` of the machine; refuse (exit 2) if they do not,
    unless ``args.allow_busy``."""
    deadline = time.monotonic() + args.wait
    while True:
        with Load() as load:
            time.sleep(5.0)
        if load.other_share <= args.max_busy:
            return
        if time.monotonic() > deadline:
            break
    message = (f"the machine is busy: other processes use "
               f"{load.other_share:.0%} of its CPU (load average "
               f"{load.load_after:.2f}), above --max-busy "
               f"{args.max_busy:.0%}; ratios would not hold on an idle "
               "machine")
    if not args.allow_busy:
        sys.exit(f"benchmarks/overhead.py: error: {message}")
    print(f"warning: {message} (--allow-busy)", file=sys.stderr)


def model_and_data(name, batch, seed=0):
    keras.utils.set_random_seed(seed)
    model = get_model(name, input_shape=(32, 32, 3), num_classes=10)
    rng = np.random.default_rng(seed)
    x = rng.random((batch, 32, 32, 3), dtype=np.float32)
    y = rng.integers(0, 10, batch)
    return model, x, y


def hardened_copy(model, fraction, replacement="poly2", seed=0,
                  xla="model"):
    """``model`` hardened with ``fraction`` of its ReLUs kept at random,
    the others replaced by ``replacement``; sites that keep nothing fold
    where they can (``harden(fold=True)``); ``xla`` as in ``harden``."""
    student = replace_relus(model, replacement=replacement)
    rng = np.random.default_rng(seed)
    scores = {site.name: rng.random(tuple(site.mask.shape))
              for site in selectors(student)}
    budget = int(fraction * sum(s.size for s in scores.values()))
    set_masks(student, top_masks(student, scores, budget=budget))
    return harden(student, budget, xla=xla)


# (fraction kept, replacement, harden's xla) of the hardened models measured.
HARDENED = ((0.1, "poly2", "model"), (0.1, "poly2", "sites"),
            (0.026, "poly2", "model"), (0.1, "poly1", "model"),
            (0.1, "identity", "model"), (0.0, "poly1", "model"),
            (0.0, "identity", "model"))


def hardened_label(fraction, replacement, xla):
    if fraction == 0:  # lines after a convolution fold into it
        return f"no ReLU kept, all {replacement}"
    return f"{fraction:.1%} kept, {replacement}, xla={xla}"


def selector_trainer(plain):
    """A ``BudgetTrainer`` of ``plain``'s selectors, past the refit phase."""
    return BudgetTrainer(replace_relus(plain, refit_steps=0), "10%",
                         budget_weight=10.0)


def train_step_ratio(name, batch, args):
    plain, x, y = model_and_data(name, batch)
    plain.compile(keras.optimizers.Adam(1e-3), LOSS)
    trainer = selector_trainer(plain)
    trainer.compile(keras.optimizers.Adam(1e-3), LOSS)
    return measured(lambda: plain.train_on_batch(x, y),
                    lambda: trainer.train_on_batch(x, y), args)


def inference_goal(kind, batch, fraction):
    """The goal of an inference row: a folded model computes less than
    the plain one, so it must not be slower."""
    if fraction == 0:
        return GOALS["folded"]
    return GOALS[f"{kind}_b1" if batch == 1 else f"{kind}_batch"]


def inference_rows(name, batches, hardened_models, args):
    """Rows for ``predict_on_batch``, the SavedModel signatures and a
    compiled function, of each ``(fraction, replacement, xla)``
    hardening."""
    plain, _, _ = model_and_data(name, 1)
    rows = []
    if keras.backend.backend() == "tensorflow":
        rows += xla_rows(name, plain, batches, args)
    for fraction, replacement, xla in hardened_models:
        hardened = hardened_copy(plain, fraction, replacement, xla=xla)
        label = hardened_label(fraction, replacement, xla)
        for batch in batches:
            x = np.random.default_rng(1).random(
                (batch, 32, 32, 3), dtype=np.float32)
            rows.append((f"{name} predict_on_batch, {label}", batch,
                         measured(lambda: plain.predict_on_batch(x),
                                  lambda: hardened.predict_on_batch(x),
                                  args),
                         inference_goal("infer", batch, fraction)))
            if keras.backend.backend() != "tensorflow":
                continue
            plain_serving = _serving(plain, x)
            for signature in ("serving_default", "serving_xla"):
                rows.append((f"{name} SavedModel {signature}, {label}",
                             batch, measured(plain_serving, _serving(
                                 hardened, x, signature), args),
                             inference_goal(signature, batch, fraction)))
            rows.append((f"{name} compiled function, {label}", batch,
                         measured(*[_compiled(m, x) for m in
                                    (plain, hardened)], args),
                         inference_goal("compiled", batch, fraction)))
    return rows


def xla_rows(name, plain, batches, args):
    """The plain model's own ``predict_on_batch`` through XLA against
    TensorFlow's kernels: the part of a hardened model's ratio that is
    XLA's (``harden`` compiles with ``jit_compile=True``)."""
    compiled = keras.models.clone_model(plain)
    copy_weights(plain, compiled)
    compiled.jit_compile = True
    rows = []
    for batch in batches:
        x = np.random.default_rng(1).random((batch, 32, 32, 3),
                                            dtype=np.float32)
        rows.append((f"{name} plain model through XLA", batch,
                     measured(lambda: plain.predict_on_batch(x),
                              lambda: compiled.predict_on_batch(x), args),
                     inference_goal("infer", batch, 1.0)))
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


def peak_memory_ratio(name, batch, runs):
    """Peak RSS of a training step with selectors over the plain one, each
    measured in a fresh subprocess, ``runs`` times in turn (a process's
    peak varies by some 100 MiB from run to run): the median ratio, its
    lowest and highest, and the median peaks (MiB)."""
    peaks = {"plain": [], "selectors": []}
    for _ in range(runs):
        for kind in peaks:
            out = subprocess.run(
                [sys.executable, __file__, "--memory-probe", kind, name,
                 str(batch)], capture_output=True, text=True, check=True)
            peaks[kind].append(
                json.loads(out.stdout.strip().splitlines()[-1]))
    ratios = [b / a for a, b in zip(peaks["plain"], peaks["selectors"])]
    return dict(ratio=statistics.median(ratios), low=min(ratios),
                high=max(ratios), plain=statistics.median(peaks["plain"]),
                selectors=statistics.median(peaks["selectors"]))


def memory_probe(kind, name, batch):
    """Prints the peak RSS (MiB) of a process that builds ``kind``'s model
    and runs three train steps; the selectors' model does not keep the
    plain one it was converted from."""
    model, x, y = model_and_data(name, batch)
    if kind == "selectors":
        model = selector_trainer(model)
        gc.collect()
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
                         batch, train_step_ratio(name, batch, args), goal))
    rows += inference_rows("resnet_small", args.small_inference,
                           args.hardened, args)
    if backend == "tensorflow":
        rows += inference_rows("resnet18", args.resnet18_inference,
                               ((0.026, "poly2", "model"),
                                (0.026, "poly2", "sites")), args)
    return [(backend, *row) for row in rows]


def print_table(rows, memory, args):
    print(f"process CPU time; each ratio the median of {args.runs} runs of "
          f"{args.rounds} interleaved rounds [lowest-highest]; load: the "
          "1-minute load average before -> after the row, and the share of "
          "the CPU other processes used meanwhile ('busy' above "
          f"{args.max_busy:.0%})")
    print("| backend | what | batch | ratio [spread] | plain ms | other ms "
          "| load (others) | goal |")
    print("|---|---|---:|---:|---:|---:|---:|---:|")
    for backend, what, batch, row, goal in rows:
        mark = "ok" if row["ratio"] <= goal else "over"
        busy = " busy" if row["other_share"] > args.max_busy else ""
        print(f"| {backend} | {what} | {batch} | {row['ratio']:.2f}x "
              f"[{row['low']:.2f}-{row['high']:.2f}] | "
              f"{row['plain_s'] * 1e3:.1f} | {row['other_s'] * 1e3:.1f} | "
              f"{row['load_before']:.2f} -> {row['load_after']:.2f} "
              f"({row['other_share']:.0%}{busy}) | <= {goal}x {mark} |")
    if memory:
        mark = "ok" if memory["ratio"] <= GOALS["memory"] else "over"
        print(f"| tensorflow | resnet18 train step peak memory (MiB) | 32 | "
              f"{memory['ratio']:.2f}x [{memory['low']:.2f}-"
              f"{memory['high']:.2f}] | {memory['plain']:.0f} | "
              f"{memory['selectors']:.0f} | - | <= {GOALS['memory']}x "
              f"{mark} |")


def parse_args(argv):
    parser = argparse.ArgumentParser(
        prog="benchmarks/overhead.py", description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--runs", type=int, default=3,
                        help="runs per ratio, for its spread (default 3)")
    parser.add_argument("--quick", action="store_true",
                        help="resnet_small only, small batches")
    parser.add_argument("--max-busy", type=float, default=0.15,
                        help="share of the CPU other processes may use "
                             "(default 0.15)")
    parser.add_argument("--wait", type=float, default=120.0,
                        help="seconds to wait for an idle machine before "
                             "refusing (default 120)")
    parser.add_argument("--allow-busy", action="store_true",
                        help="measure on a busy machine anyway (rows "
                             "marked 'busy')")
    parser.add_argument("--rows-json", action="store_true",
                        help=argparse.SUPPRESS)  # the JAX subprocess
    parser.add_argument("--memory-probe", nargs=3, default=None,
                        help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    args.small_batches = (128,) if args.quick else (32, 128)
    args.resnet18_batches = () if args.quick else (32,)
    args.small_inference = (1, 128)
    args.resnet18_inference = () if args.quick else (1, 32)
    args.hardened = HARDENED[:2] + HARDENED[-1:] if args.quick else HARDENED
    return args


def main(argv=None):
    args = parse_args(argv)
    if args.memory_probe:
        kind, name, batch = args.memory_probe
        memory_probe(kind, name, int(batch))
        return
    if not args.rows_json:
        wait_until_idle(args)
    rows = backend_rows(args)
    if args.rows_json:
        print(json.dumps(rows))
        return
    if keras.backend.backend() == "tensorflow":
        command = [sys.executable, __file__, "--rows-json", "--rounds",
                   str(args.rounds), "--repeats", str(args.repeats),
                   "--runs", str(args.runs)]
        if args.quick:
            command.append("--quick")
        out = subprocess.run(command, capture_output=True, text=True,
                             check=True,
                             env={**os.environ, "KERAS_BACKEND": "jax"})
        rows += [tuple(row) for row in
                 json.loads(out.stdout.strip().splitlines()[-1])]
    memory = None if args.quick else peak_memory_ratio("resnet18", 32,
                                                       args.runs)
    print_table(rows, memory, args)


if __name__ == "__main__":
    main()
