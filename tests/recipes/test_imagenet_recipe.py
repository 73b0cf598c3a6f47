"""recipes/imagenet.py: its settings, and a run end to end on
tensorflow-datasets' mock imagenet2012 (EfficientNet at 32x32, SiLU sites
selected, teacher from a weights file, export with the PI report)."""

import json
import math
import signal
import subprocess
import sys
from pathlib import Path

import keras
import numpy as np
import pytest
from PIL import Image

from keras_autorep.data import load_image_streams
from keras_autorep.data.streams import IMAGENET_ARCHIVES
from keras_autorep.graph import count_relus
from keras_autorep.recipes.cli import build_parser
from keras_autorep.recipes.run import Run, RunData
from keras_autorep.recipes.settings import Settings, UsageError
from keras_autorep.training.checkpoints import METADATA
from image_trees import (  # tests/ helpers
    CLASSES,
    UNDECODABLE,
    write_bad_images,
    write_tree,
)
from test_recipes import (  # this folder's helpers
    TF_ENV,
    check_finished,
    recipe_command,
    run_recipe,
    wait_for_checkpoint,
)

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]


def resolve(*argv):
    parser = build_parser("imagenet")
    return Settings.resolve("imagenet", vars(parser.parse_args(
        ["--budget", "176.1x", *argv])))


def test_imagenet_settings_default_to_efficientnet_b2_silu_at_260(
        usage_error):
    paper = resolve()
    assert (paper.model, paper.image_size, paper.activations) == (
        "efficientnet_b2", 260, ("silu",))
    quick = resolve("--quick")
    assert (quick.model, quick.image_size, quick.subset) == (
        "efficientnet_b0", 64, (10_000, 2_000))
    assert (paper.replacement, quick.replacement) == ("poly2", "poly1")
    assert resolve("--quick", "--replacement", "poly2").replacement == "poly2"
    assert resolve("--model", "resnet18").image_size == 224
    assert resolve("--activations", "swish,silu").activations == ("silu",)
    assert "image_size" in paper.teacher_key()
    for argv, message in [
            (("--image-size", "16"), "--image-size must be >= 32"),
            (("--activations", "tanh"), "--activations: activation must be"),
            (("--method", "snl", "--allocation", "uniform"),
             "--method snl selects ReLUs only"),
            (("--teacher", "imagenet", "--model", "resnet18"),
             "Keras has ImageNet weights for --model efficientnet_b0 or "
             "efficientnet_b2 only")]:
        with pytest.raises(UsageError) as error:
            resolve(*argv)
        assert message in str(error.value), (argv, str(error.value))
    cifar = Settings.resolve("cifar10", vars(build_parser("cifar10")
                                             .parse_args(["--budget", "1k"])))
    assert (cifar.image_size, cifar.activations) == (None, ("relu",))
    usage_error(lambda: build_parser("cifar10").parse_args(
        ["--budget", "1k", "--image-size", "64"]),
        "unrecognized arguments: --image-size 64")
    usage_error(lambda: build_parser(None, "cryptonas").parse_args(
        ["--budget", "1k", "--dataset", "imagenet"]),
        "argument --dataset: invalid choice: 'imagenet'")
    with pytest.raises(UsageError, match="--method cryptonas reads "
                       "in-memory datasets, not imagenet"):
        resolve("--method", "cryptonas")


def mock_imagenet_run(tmp_path, model):
    """The recipe on 16/8 mock images at 32x32, 1 search epoch, with a
    weights-file teacher (the mock's random labels leave nothing to learn:
    this checks the path, not the accuracy)."""
    manual = tmp_path / "manual"
    manual.mkdir()
    for archive in IMAGENET_ARCHIVES:
        (manual / archive).write_bytes(b"")
    weights, out = tmp_path / "teacher.weights.h5", tmp_path / "out"
    command = [
        sys.executable, str(HERE / "mock_imagenet_recipe.py"), "24",
        str(weights), model, "32", "--",
        "--model", model, "--image-size", "32", "--budget", "176.1x",
        "--teacher", str(weights), "--epochs", "1", "--finetune-epochs", "0",
        "--subset", "16,8", "--data-dir", str(manual), "--out", str(out)]
    result = subprocess.run(command, cwd=REPO, env=TF_ENV, timeout=900,
                            capture_output=True, text=True)
    return out, check_finished(result)


@pytest.mark.parametrize("model", [
    "efficientnet_b0",
    pytest.param("efficientnet_b2", marks=pytest.mark.slow)])
def test_imagenet_recipe_end_to_end_on_mock_data(tmp_path, model):
    out, stdout = mock_imagenet_run(tmp_path, model)
    assert "silu elements" in stdout
    export = out / f"imagenet_{model}_176.1x" / "1"
    for name in ("saved_model.pb", "model.onnx", "pi_spec.json",
                 "pi_cost.txt", "relus_per_layer.png", "training.png"):
        assert (export / name).is_file(), name
    report = json.loads((export / "report.json").read_text())
    assert (report["dataset"], report["model"], report["image_size"],
            report["activations"]) == ("imagenet", model, 32, ["silu"])
    assert report["teacher"]["source"] == "given"
    assert report["budget"] == math.floor(report["total_relus"] / 176.1)
    assert 0 < report["relu_count"] <= report["budget"]
    assert report["relus"]["kept_by_activation"] == {
        "silu": report["relu_count"]}
    assert set(report["final_test_accuracy"]) == {"top1", "top5"}
    assert report["pi_cost"]["counts"]["smooth"] > 0
    exported = keras.saving.load_model(export / "model.keras")
    assert count_relus(exported).kept == report["relu_count"]


def test_a_run_over_streams_samples_holds_out_and_evaluates(tmp_path):
    """What the stages ask of a run (datasets, steps, a hold-out for
    --allocation tuned, samples for the sanity check and --protocol,
    evaluation) on streamed splits."""
    rng = np.random.default_rng(0)
    for split, count in (("train", 5), ("val", 2)):
        for wnid in ("n01", "n02"):
            folder = tmp_path / "tree" / split / wnid
            folder.mkdir(parents=True)
            for i in range(count):
                size = tuple(rng.integers(30, 70, 2))
                Image.fromarray(rng.integers(0, 256, size + (3,), np.uint8)
                                ).save(folder / f"{i}.JPEG")
    train, test, info = load_image_streams("tree", tmp_path / "tree", 32)
    settings = resolve("--batch-size", "4", "--seed", "3")
    run = Run(settings, RunData(train, test, info, 0.0), folder=None)
    assert run.steps(2) == 2 * 3
    fit, held = run.holdout(0.2)
    assert (len(fit), len(held)) == (8, 2)
    train_ds, test_ds = run.datasets(fit, held)
    assert sum(len(y) for _, y in train_ds) == 8
    images, labels = run.sample(3, shuffled=True)
    assert images.shape == (3, 32, 32, 3) and labels.shape == (3,)
    np.testing.assert_array_equal(run.sample(3)[1], train.labels[:3])
    model = keras.Sequential([keras.Input((32, 32, 3)),
                              keras.layers.GlobalAveragePooling2D(),
                              keras.layers.Dense(2)])
    # The top-1 of the model's own predictions on the test batches.
    batches = [(model.predict(x, verbose=0), np.asarray(y))
               for x, y in run.datasets()[1]]
    hits = np.concatenate([np.argmax(p, -1) == y for p, y in batches])
    assert hits.size == 4
    assert run.evaluate(model)["top1"] == pytest.approx(hits.mean())


def test_a_streamed_run_skips_bad_images_and_resumes_after_sigterm(
        tmp_path):
    """The recipe over an image tree holding files that do not decode:
    --strict-images stops before training, naming them; without it they
    are skipped and reported; SIGTERM mid-search saves the step and exits
    143, and the same command resumes there and finishes."""
    tree = write_tree(tmp_path / "tree", train=6)
    write_bad_images(tree / "train" / CLASSES[1])
    bad = [f"train/{CLASSES[1]}/{name}" for name in UNDECODABLE]
    out = tmp_path / "out"
    args = ["--model", "resnet_small", "--image-size", "32", "--budget",
            "50%", "--teacher-epochs", "1", "--epochs", "2",
            "--finetune-epochs", "1", "--batch-size", "2",
            "--checkpoint-every", "1", "--allow-unstable", "--run-name",
            "trees", "--data-dir", str(tree), "--out", str(out),
            "--cache-dir", str(tmp_path / "cache")]
    strict = run_recipe("imagenet", *args, "--strict-images")
    assert strict.returncode == 2
    error = strict.stderr.strip().splitlines()[-1]
    assert "3 image file(s) that do not decode" in error, error
    assert all(name in error for name in bad) and "--strict-images" in error
    assert not (out / "runs" / "trees").exists()
    metadata = out / "runs" / "trees" / "search" / "backup" / METADATA
    with open(tmp_path / "first.log", "w+") as log:
        first = subprocess.Popen(recipe_command("imagenet", *args), cwd=REPO,
                                 env=TF_ENV, stdout=log,
                                 stderr=subprocess.PIPE, text=True)
        wait_for_checkpoint(first, metadata,
                            lambda record: record["batch"] >= 1)
        first.send_signal(signal.SIGTERM)
        stderr = first.communicate(timeout=120)[1]
        log.seek(0)
        first_log = log.read()
    assert first.returncode == 128 + signal.SIGTERM, first_log + stderr
    assert "Traceback" not in stderr
    stopped = stderr.strip().splitlines()[-1]
    assert stopped.startswith("recipes/imagenet.py: stopped by SIGTERM; "
                              "saved the search stage at epoch "), stopped
    assert stopped.endswith("; run the same command again to resume")
    assert "Skipping 3 image file(s)" in first_log
    assert all(f"  {name}: " in first_log for name in bad)
    stdout = check_finished(run_recipe("imagenet", *args))
    assert "Resuming the search stage at batch " in stdout or (
        "Resuming the search stage after epoch " in stdout), stdout
    report = json.loads((out / "trees" / "1" / "report.json").read_text())
    skipped = report["unreadable_images"]
    assert skipped["count"] == 3
    assert sorted(f["file"] for f in skipped["files"]) == sorted(bad)
    assert report["settings"]["image_size"] == 32
