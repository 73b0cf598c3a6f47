"""The teacher stage: the all-ReLU model, given, cached or trained.

Trained teachers are cached in ``<out>/teachers/<model>_<dataset>_<hash>
.keras`` (hash of the data and teacher settings, record beside it in
``.json``) and reused by later runs. One run trains a given teacher at a
time (lock ``.lock`` beside it); another run that needs it waits, then
reuses it.
"""

import hashlib
import json
import time
from pathlib import Path

import keras

from keras_autorep.architectures import get_model
from keras_autorep.data import normalization_layer
from keras_autorep.recipes.reporting import format_accuracy, one_line
from keras_autorep.recipes.run_folder import (
    hold_lock,
    read_record,
    remove_temporary_files,
    save_atomic,
    write_json,
)
from keras_autorep.recipes.settings import (
    IMAGENET_WEIGHTS,
    WEIGHTS_SUFFIXES,
    UsageError,
)
from keras_autorep.training.schedules import MOMENTUM, cosine_sgd


def teacher_is_file(settings):
    """Whether ``--teacher`` names a whole ``.keras`` model (rather than
    weights of ``--model``)."""
    teacher = settings.teacher
    return teacher is not None and teacher != IMAGENET_WEIGHTS and (
        not teacher.endswith(WEIGHTS_SUFFIXES))


def build_model(settings, info):
    """``--model`` for the data: freshly initialised, or with the
    ``--teacher`` weights (a weights file, or Keras's ImageNet weights);
    ``UsageError`` when they do not fit."""
    s = settings
    options = dict(input_shape=info.image_shape,
                   num_classes=info.num_classes,
                   weight_decay=s.weight_decay / 2)
    if s.teacher != IMAGENET_WEIGHTS:
        model = get_model(s.model, preprocessing=normalization_layer(info),
                          **options)
        if s.teacher is None:
            return model
    try:
        if s.teacher == IMAGENET_WEIGHTS:
            return get_model(s.model, weights=IMAGENET_WEIGHTS, **options)
        model.load_weights(s.teacher)
    except Exception as e:  # a missing download, a file that does not fit
        raise UsageError(
            f"--teacher {s.teacher}: cannot give --model {s.model} these "
            f"weights ({type(e).__name__}: {one_line(e)[:300]})") from None
    return model


def load_teacher_file(path):
    """The ``--teacher`` model, or ``UsageError``."""
    try:
        return keras.saving.load_model(path, compile=False)
    except Exception as e:  # any unreadable or non-Keras file
        raise UsageError(
            f"--teacher {path}: cannot load a Keras model from it "
            f"({type(e).__name__}: {one_line(e)[:200]})") from None


def teacher_stage(recipe):
    """The all-ReLU teacher (given, cached, or trained now) and its
    record."""
    run, s = recipe.run, recipe.run.settings
    if s.teacher is not None:
        print(f"Teacher: {s.teacher}", flush=True)
        start = time.perf_counter()
        record = dict(source="given", path=str(Path(s.teacher).resolve()),
                      test_accuracy=run.evaluate(recipe.model),
                      wall_seconds=time.perf_counter() - start)
        run.times["teacher"] = record["wall_seconds"]
        return recipe.model, record
    digest = hashlib.sha1(json.dumps(s.teacher_key(), sort_keys=True)
                          .encode()).hexdigest()[:12]
    path = run.out / "teachers" / f"{s.model}_{s.dataset}_{digest}.keras"
    record_file = path.with_suffix(".json")
    path.parent.mkdir(parents=True, exist_ok=True)
    lock = hold_lock(path.with_suffix(".lock"), f"teacher {path}", wait=True)
    try:
        remove_temporary_files(path.parent.glob(f"*{path.stem}*"))
        record = read_record(record_file) if path.is_file() else None
        if record is not None:
            print(f"Teacher: reusing {path}", flush=True)
            record["source"] = "cached"
        else:
            record = _train_teacher(recipe, path)
            write_json(record_file, record)
    finally:
        lock.release()
    run.folder.drop_backups(("teacher",))
    print(f"Teacher test accuracy: "
          f"{format_accuracy(record['test_accuracy'])}", flush=True)
    run.times["teacher"] = record["wall_seconds"]
    return keras.saving.load_model(path, compile=False), record


def _train_teacher(recipe, path):
    run, s = recipe.run, recipe.run.settings
    print(f"Teacher: training {s.model} for {s.teacher_epochs} epochs "
          f"(SGD lr {s.teacher_lr:g}, momentum {MOMENTUM}, cosine "
          f"decay, weight decay {s.weight_decay:g})", flush=True)
    teacher = recipe.model
    teacher.compile(
        optimizer=cosine_sgd(s.teacher_lr, run.steps(s.teacher_epochs)),
        **run.compile_args())
    history = run.fit("teacher", teacher, s.teacher_epochs)
    save_atomic(teacher, path)
    return dict(
        source="trained", path=str(path.resolve()),
        settings=s.teacher_key(), test_accuracy=run.evaluate(teacher),
        epochs=s.teacher_epochs,
        wall_seconds=sum(history["epoch_seconds"]), history=history,
    )
