"""Two-party SPU inference of StableHLO text, run in SPU's virtualenv.

Run by ``python -m keras_autorep.pi measure`` with the interpreter of
``.venv-spu`` (built by ``python -m keras_autorep.pi setup``); it talks
to the project through files only and never imports keras_autorep. Shipped
as package data, not as a module of the package::

    .venv-spu/bin/python spu_party.py MODEL.stablehlo.mlir \\
        IMAGES.npy OUT_DIR --protocol SEMI2K|CHEETAH [--port 29600]

The program's one argument, the image, is secret; everything it closes
over (the model) is public. Two processes, one per party, run the compiled
program over brpc links on loopback (FM64 ring). Each party first runs one
all-zero image (``warmup``: one-time setup such as CHEETAH's oblivious
transfers is paid there), then every image, reading its sent bytes and send
actions per run from SPU's profile (``enable_pphlo_profile`` and
``enable_hal_profile``: per-op and per-kernel bytes, the ``Link details``
total). Both parties run with ``max_concurrency`` 2 (CHEETAH's OT
instances, and so its send actions, do not depend on the machine's cores).
``OUT_DIR`` receives ``logits.npy`` and ``stats.json``.
"""

import argparse
import json
import multiprocessing
import os
import queue
import re
import sys
import time
from pathlib import Path

import numpy as np

LINK = re.compile(
    r"Link details: total send bytes (\d+), recv bytes (\d+), "
    r"send actions (\d+), recv actions (\d+)"
)
KERNEL = re.compile(
    r"- (\S+), executed (\d+) times, duration \S+s, send bytes (\d+) "
    r"recv bytes (\d+), send actions (\d+), recv actions (\d+)"
)
SECTION = re.compile(r"(HLO|HAL|MPC) profiling")
MAX_CONCURRENCY = 2


def parse_profile(text):
    """Per run: link totals and the MPC kernels' bytes and send actions."""
    runs, kernels, section = [], {}, None
    for line in text.splitlines():
        found = SECTION.search(line)
        if found:
            section = found.group(1)
            continue
        found = KERNEL.search(line)
        if found and section == "MPC":
            name, count, sent, _, actions, _ = found.groups()
            kernels[name] = {"calls": int(count), "bytes": int(sent),
                             "send_actions": int(actions)}
            continue
        found = LINK.search(line)
        if found:
            sent, received, actions, _ = map(int, found.groups())
            runs.append({"bytes": sent, "received_bytes": received,
                         "send_actions": actions, "kernels": kernels})
            kernels, section = {}, None
    return runs


def party(rank, port, protocol, code, shares, log_path, inbox):
    import spu.api as spu_api
    import spu.libspu as libspu

    log = os.open(log_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC)
    os.dup2(log, 1)
    os.dup2(log, 2)
    desc = libspu.link.Desc()
    desc.recv_timeout_ms = 600_000
    for other in (0, 1):
        desc.add_party(f"party{other}", f"127.0.0.1:{port + other}")
    link = libspu.link.create_brpc(desc, rank)
    config = libspu.RuntimeConfig(
        protocol=getattr(libspu.ProtocolKind, protocol),
        field=libspu.FieldType.FM64,
    )
    # CHEETAH splits each OT-based kernel (comparisons, truncations) over
    # min(threads, elements / 2048) OT instances, each with its own
    # messages: a fixed thread count keeps the send actions of a program
    # the same on every machine.
    config.max_concurrency = MAX_CONCURRENCY
    config.enable_pphlo_profile = True
    config.enable_hal_profile = True
    runtime = spu_api.Runtime(link, config)
    executable = libspu.Executable(
        name="logits", input_names=["image"], output_names=["logits"],
        code=code,
    )
    outputs, seconds = [], []
    for share in shares:
        value = libspu.Share()
        value.meta, value.share_chunks = share
        runtime.set_var("image", value)
        began = time.perf_counter()
        runtime.run(executable)
        seconds.append(time.perf_counter() - began)
        out = runtime.get_var("logits")
        outputs.append((out.meta, list(out.share_chunks)))
    link.stop_link()
    sys.stdout.flush()
    inbox.put((rank, outputs, seconds))


def collect(inbox, processes, out_dir, limit=3600):
    """Each party's ``(outputs, seconds)`` by rank. A party that dies
    (its peer would wait for it until the link times out) stops the run
    at once: the other is terminated and the dead one's log goes to
    stderr."""
    found, began = {}, time.monotonic()
    while len(found) < len(processes):
        try:
            rank, outputs, seconds = inbox.get(timeout=1)
            found[rank] = (outputs, seconds)
            continue
        except queue.Empty:
            pass
        dead = [rank for rank, process in enumerate(processes)
                if process.exitcode not in (None, 0)]
        if dead or time.monotonic() - began > limit:
            for process in processes:
                process.terminate()
            for rank in dead:
                log = out_dir / f"party{rank}.log"
                sys.stderr.write(log.read_text(errors="replace")[-4000:])
            sys.exit(f"party {dead[0]} failed (exit status "
                     f"{processes[dead[0]].exitcode}), see {out_dir}"
                     if dead else f"no result within {limit} s")
    return found


def main(argv=None):
    import spu.api as spu_api
    import spu.libspu as libspu

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("program")
    parser.add_argument("images")
    parser.add_argument("out_dir")
    parser.add_argument("--protocol", choices=("SEMI2K", "CHEETAH"),
                        required=True)
    parser.add_argument("--port", type=int, default=29600)
    args = parser.parse_args(argv)
    out_dir = Path(args.out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    images = np.load(args.images).astype("float32")
    images = np.concatenate([np.zeros_like(images[:1]), images])
    secret = libspu.Visibility.VIS_SECRET
    source = libspu.CompilationSource(
        libspu.SourceIRType.STABLEHLO, Path(args.program).read_bytes(),
        [secret],
    )
    code = spu_api.compile(source, libspu.CompilerOptions())
    config = libspu.RuntimeConfig(
        protocol=getattr(libspu.ProtocolKind, args.protocol),
        field=libspu.FieldType.FM64,
    )
    io = spu_api.Io(2, config)
    shares = [io.make_shares(image[None], secret) for image in images]
    context = multiprocessing.get_context("spawn")
    inbox = context.Queue()
    processes = [
        context.Process(target=party, args=(
            rank, args.port, args.protocol, code,
            [(s[rank].meta, list(s[rank].share_chunks)) for s in shares],
            str(out_dir / f"party{rank}.log"), inbox,
        ))
        for rank in (0, 1)
    ]
    for process in processes:
        process.start()
    results = collect(inbox, processes, out_dir)
    for process in processes:
        process.join()
    logits = []
    for index in range(len(images)):
        pieces = []
        for rank in (0, 1):
            piece = libspu.Share()
            piece.meta, piece.share_chunks = results[rank][0][index]
            pieces.append(piece)
        logits.append(io.reconstruct(pieces)[0])
    np.save(out_dir / "logits.npy", np.stack(logits[1:]))
    parties = []
    for rank in (0, 1):
        runs = parse_profile((out_dir / f"party{rank}.log").read_text())
        for run, seconds in zip(runs, results[rank][1]):
            run["seconds"] = seconds
        parties.append({"rank": rank, "warmup": runs[0], "runs": runs[1:]})
    (out_dir / "stats.json").write_text(json.dumps(
        {"runtime": f"spu-{args.protocol.lower()}", "parties": parties},
        indent=1,
    ))
    return 0


if __name__ == "__main__":
    sys.exit(main())
