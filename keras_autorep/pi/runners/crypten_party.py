"""Two-party CrypTen inference of an ONNX file, run in CrypTen's virtualenv.

Run by ``python -m keras_autorep.pi measure`` with the interpreter of
``.venv-crypten`` (built by ``python -m keras_autorep.pi setup``); it talks
to the project through files only and never imports keras_autorep. Shipped
as package data, not as a module of the package::

    .venv-crypten/bin/python crypten_party.py \\
        MODEL.onnx IMAGES.npy OUT_DIR [--port 29500]

Party 0 holds the model (``encrypt(src=0)``: every initialiser becomes a
secret-shared parameter), party 1 the images (``cryptensor(src=1)``); the
two are separate processes that talk over loopback (gloo). For each image,
one batch-1 forward pass is timed and CrypTen's communicator counts
(``rounds``, ``bytes``: the elements a party sends and receives, 8 B each)
are read before and after it. ``OUT_DIR`` receives ``logits.npy`` (the
decrypted outputs) and ``stats.json`` (per party: per-image rounds, bytes
and seconds, and the one-off cost of sharing the model).
"""

import argparse
import json
import multiprocessing
import os
import sys
import time
import types
from pathlib import Path

import numpy as np


def import_crypten():
    """``import crypten`` on torch >= 2.1.

    CrypTen 0.4.1 imports ``torch.onnx._internal.registration`` (gone from
    torch 2.1 on) only to patch the exporter used by ``from_pytorch``; an
    empty stand-in module lets ``import crypten`` and ``from_onnx`` work.
    """
    name = "torch.onnx._internal.registration"
    if name not in sys.modules:
        try:
            __import__(name)
        except ImportError:
            shim = types.ModuleType(name)
            shim.registry = None
            sys.modules[name] = shim
    import crypten

    return crypten


def party(rank, port, model_path, images_path, out_dir):
    os.environ.update(
        RANK=str(rank), WORLD_SIZE="2", DISTRIBUTED_BACKEND="gloo",
        RENDEZVOUS=f"tcp://127.0.0.1:{port}",
    )
    crypten = import_crypten()
    import torch

    crypten.cfg.communicator.verbose = True
    crypten.init()
    torch.manual_seed(rank)
    comm = crypten.comm.get()
    images = np.load(images_path).astype("float32")
    start = comm.get_communication_stats()
    with open(model_path, "rb") as handle:
        model = crypten.nn.from_onnx(handle)
    model.encrypt(src=0)
    model.eval()
    setup = comm.get_communication_stats()
    runs, logits = [], []
    for image in images:
        data = torch.from_numpy(image[None]) if rank == 1 else \
            torch.zeros((1,) + image.shape)
        secret = crypten.cryptensor(data, src=1)
        before = comm.get_communication_stats()
        began = time.perf_counter()
        with crypten.no_grad():
            output = model(secret)
        seconds = time.perf_counter() - began
        after = comm.get_communication_stats()
        logits.append(output.get_plain_text().numpy()[0])
        runs.append({
            "rounds": after["rounds"] - before["rounds"],
            "bytes": int(after["bytes"] - before["bytes"]),
            "seconds": seconds,
        })
    stats = {
        "rank": rank,
        "setup_bytes": int(setup["bytes"] - start["bytes"]),
        "setup_rounds": setup["rounds"] - start["rounds"],
        "runs": runs,
    }
    Path(out_dir, f"party{rank}.json").write_text(json.dumps(stats))
    if rank == 0:
        np.save(Path(out_dir, "logits.npy"), np.stack(logits))
    crypten.uninit()


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("model")
    parser.add_argument("images")
    parser.add_argument("out_dir")
    parser.add_argument("--port", type=int, default=29500)
    args = parser.parse_args(argv)
    Path(args.out_dir).mkdir(parents=True, exist_ok=True)
    context = multiprocessing.get_context("spawn")
    processes = [
        context.Process(
            target=party,
            args=(rank, args.port, args.model, args.images, args.out_dir),
        )
        for rank in (0, 1)
    ]
    for process in processes:
        process.start()
    for process in processes:
        process.join()
    failed = [p.exitcode for p in processes if p.exitcode != 0]
    if failed:
        print(f"error: a CrypTen party exited with {failed}", file=sys.stderr)
        return 1
    parties = [
        json.loads(Path(args.out_dir, f"party{rank}.json").read_text())
        for rank in (0, 1)
    ]
    Path(args.out_dir, "stats.json").write_text(
        json.dumps({"runtime": "crypten", "parties": parties}, indent=1)
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
