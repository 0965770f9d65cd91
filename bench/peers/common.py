"""What every peer shares: the recipe, its data, fastnet's first weights and batch order, the check
of the thread pin, the timed epochs and the metrics JSON.

A peer module does three things of its own: build its library's model from the initial weights,
run one training pass over an order of the samples (returning the mean loss and the steps taken),
and give logits for the test images. `run` does the rest the same way for all of them, as
fastnet.train does it: each epoch's order is drawn, and the pass timed, inside the epoch's clock
(wall and process CPU); evaluation comes after the last epoch, untimed; the JSON has fastnet's
`--metrics-json` keys where they overlap (epoch_seconds, train_loss, test_loss, test_accuracy,
startup_seconds, total_seconds, peak_rss_mb, threads).

Shapes: N samples, D0 inputs (784), K classes; weights are (D_in, D_out) as in fastnet.
"""

import argparse
import json
import os
import resource
import time

import numpy as np

from fastnet.recipe import PRESETS

SEED_RECIPE = PRESETS["seed"]
LR, BETA1, BETA2 = SEED_RECIPE["lr"], SEED_RECIPE["beta1"], SEED_RECIPE["beta2"]  # 5e-4, 0.9, 0.999
EPS = 1e-8  # fastnet.train's --eps default
BATCH = 128


def pinned_threads():
    """(OS threads of this process, the cores any of them may run on): a pin that a library's own
    threads escaped shows here, whatever the library says of itself."""
    tasks = os.listdir("/proc/self/task")
    cores = set()
    for task in tasks:
        try:
            with open(f"/proc/self/task/{task}/status") as f:
                allowed = next(line.split(":")[1].strip() for line in f if line.startswith("Cpus_allowed_list"))
        except FileNotFoundError:  # the thread ended since the listing
            continue
        for part in allowed.split(","):
            first, _, last = part.partition("-")
            cores.update(range(int(first), int(last or first) + 1))
    return len(tasks), sorted(cores)


def parser(description):
    """The flags every peer takes; a peer may add its own."""
    p = argparse.ArgumentParser(description=description)
    p.add_argument("--epochs", type=int, default=5)
    p.add_argument("--batch-size", type=int, default=BATCH)
    p.add_argument("--threads", type=int, default=1, help="cores (and library threads) to use")
    p.add_argument("--init", metavar="NPZ", help="initial weights from write_init (default: made here)")
    p.add_argument("--data-dir", help="directory of the four Fashion-MNIST IDX files (default: fastnet's search)")
    p.add_argument("--metrics-json", metavar="PATH")
    return p


def load(split, data_dir=None):
    """(pixels / 255 as float32 (N, D0), labels int64 (N,)) of a Fashion-MNIST split, as fastnet finds it."""
    from fastnet import data

    loaded = data.load("fashion-mnist", split, data_dir)
    images, labels = loaded.images, loaded.labels
    return images.astype(np.float32) / np.float32(255), labels.astype(np.int64)


def write_init(path, layers="784,128,10", seed=0):
    """Save fastnet's fresh state for the seed recipe (fastnet.recipe.new_state): its He weights,
    zero biases, and its generator's state after them, which draws each epoch's order."""
    from fastnet.model import parse_layers
    from fastnet.recipe import Recipe, new_state

    r = Recipe.preset("seed", layers=parse_layers(layers), seed=seed, dtype="float32", optimizer="adam", eps=EPS)
    state = new_state(r, None, scaling="none")  # the images are not read
    arrays = {}
    for l, (W, b) in enumerate(zip(state.model.W, state.model.b)):
        arrays[f"W{l}"], arrays[f"b{l}"] = W, b
    np.savez(path, rng_state=json.dumps(state.rng.bit_generator.state), **arrays)


def read_init(path):
    """([(W (D_in, D_out), b (D_out,)) per layer], the generator of the epochs' orders) from write_init."""
    with np.load(path) as f:
        layers = [(f[f"W{l}"], f[f"b{l}"]) for l in range(sum(k.startswith("W") for k in f.files))]
        rng = np.random.default_rng()
        rng.bit_generator.state = json.loads(str(f["rng_state"]))
    return layers, rng


def initial(args):
    """read_init of --init, or of a fresh write_init for seed 0 and 784-128-10 when none is given."""
    if args.init:
        return read_init(args.init)
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        write_init(os.path.join(tmp, "init.npz"))
        return read_init(os.path.join(tmp, "init.npz"))


def batches(order, batch_size):
    """The index arrays of an epoch's batches: full ones, then the partial last one (kept)."""
    return [order[s : s + batch_size] for s in range(0, len(order), batch_size)]


def run(args, start, rng, n, epoch, logits, **info):
    """Train, evaluate, print one line per epoch, write the metrics JSON; returns the metrics.

    epoch(order) -> (mean loss over the samples, steps taken): one training pass over the samples
    in `order`, finished (not just dispatched) when it returns. A peer with its own shuffle
    (Keras, scikit-learn) ignores `order`; drawing it costs the same for everyone
    (docs/performance.md#constants-and-where-they-come-from).
    logits(images) -> float array (N, K) for float32 pixels / 255. n: the training samples.
    start: perf_counter() before the library was imported.
    """
    metrics = {"epochs": args.epochs, "batch_size": args.batch_size, "lr": LR, "beta1": BETA1, "beta2": BETA2,
               "eps": EPS, "optimizer": "adam", "dtype": "float32", "threads": args.threads,
               **info}
    metrics["startup_seconds"] = time.perf_counter() - start
    seconds, cpu, losses, steps = [], [], [], []
    for e in range(args.epochs):
        t, c = time.perf_counter(), time.process_time()
        loss, taken = epoch(rng.permutation(n))  # the same draw as fastnet's training loop
        seconds.append(time.perf_counter() - t)
        cpu.append(time.process_time() - c)
        losses.append(float(loss))
        steps.append(int(taken))
        print(f"epoch {e + 1}/{args.epochs}  loss {losses[-1]:.4f}  {seconds[-1]:.2f}s  "
              f"cpu/wall {cpu[-1] / seconds[-1]:.2f}  steps {steps[-1]}", flush=True)
    images, labels = load("test", args.data_dir)
    test_loss, test_acc = scores(logits(images), labels)
    print(f"test accuracy {test_acc:.4f}  test loss {test_loss:.4f}")
    metrics["os_threads"], metrics["cores_of_all_threads"] = pinned_threads()
    metrics.update(epoch_seconds=seconds, epoch_cpu_seconds=cpu, steps_per_epoch=steps, train_loss=losses,
                   test_loss=test_loss, test_accuracy=test_acc, total_seconds=time.perf_counter() - start,
                   peak_rss_mb=resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)
    if args.metrics_json:
        with open(args.metrics_json, "w") as f:
            json.dump(metrics, f, indent=2)
    return metrics


def scores(logits, labels):
    """(mean cross-entropy, accuracy) of logits (N, K) against integer labels (N,), in float64.

    Cross-entropy as logsumexp(z) - z[y], the row max subtracted first so exp cannot overflow.
    """
    z = np.asarray(logits, np.float64)
    z = z - z.max(axis=1, keepdims=True)
    loss = np.log(np.exp(z).sum(axis=1)) - z[np.arange(len(labels)), labels]
    return float(loss.mean()), float(np.mean(z.argmax(axis=1) == labels))
