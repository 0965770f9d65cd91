"""python -m bench.torch_mlp: the same MLP as fastnet's, trained in PyTorch, for bench.compare.

nn.Linear layers with ReLU between them, He (kaiming_normal) weights and zero biases, mean
cross-entropy, torch.optim.Adam with fastnet's betas and eps, batches drawn from a fresh seeded
permutation each epoch with the last partial batch kept, pixels as float32 / 255 from
fastnet.data.load_split. Each epoch's training pass (shuffle included) is timed alone, evaluation
apart, as fastnet does; the metrics JSON has fastnet's keys, with backend "torch".
"""

import argparse
import json
import resource
import time

START = time.perf_counter()

import torch  # noqa: E402  (imported after START: its import is part of the start-up time)
from torch import nn  # noqa: E402

from fastnet import data  # noqa: E402
from fastnet.model import parse_layers  # noqa: E402


def build_parser():
    p = argparse.ArgumentParser(prog="python -m bench.torch_mlp", description=__doc__.splitlines()[0])
    p.add_argument("--epochs", type=int, default=5)
    p.add_argument("--batch-size", type=int, default=128)
    p.add_argument("--lr", type=float, default=5e-4)
    p.add_argument("--layers", default="784,128,10", help="layer sizes, input first")
    p.add_argument("--threads", type=int, default=2, help="torch.set_num_threads")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--metrics-json", metavar="PATH")
    return p


def tensors(split):
    """(images float32 (N, 784) in [0, 1], labels int64 (N,)) of a Fashion-MNIST split."""
    chosen = data.load_split("fashion-mnist", split)
    return torch.from_numpy(chosen.images).float().div_(255), torch.from_numpy(chosen.labels).long()


def build_model(sizes):
    """Linear layers with ReLU between them: He-normal weights (fan-in), zero biases."""
    layers = []
    for d_in, d_out in zip(sizes, sizes[1:]):
        linear = nn.Linear(d_in, d_out)
        nn.init.kaiming_normal_(linear.weight, nonlinearity="relu")
        nn.init.zeros_(linear.bias)
        layers += [linear, nn.ReLU()]
    return nn.Sequential(*layers[:-1])


def train_epoch(model, opt, X, y, batch_size, generator):
    """One pass in a fresh order (last partial batch kept); returns the mean loss over samples."""
    order = torch.randperm(len(y), generator=generator)
    Xs, ys = X[order], y[order]
    total = torch.zeros(())
    for start in range(0, len(y), batch_size):
        xb, yb = Xs[start : start + batch_size], ys[start : start + batch_size]
        opt.zero_grad(set_to_none=True)
        loss = nn.functional.cross_entropy(model(xb), yb)
        loss.backward()
        opt.step()
        total += loss.detach() * len(yb)
    return float(total) / len(y)


@torch.inference_mode()
def evaluate(model, X, y):
    """(mean cross-entropy, accuracy) on X, y."""
    logits = model(X)
    return float(nn.functional.cross_entropy(logits, y)), float((logits.argmax(1) == y).float().mean())


def main(argv=None):
    args = build_parser().parse_args(argv)
    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    generator = torch.Generator().manual_seed(args.seed)
    X, y = tensors("train")
    model = build_model(parse_layers(args.layers))
    opt = torch.optim.Adam(model.parameters(), lr=args.lr, betas=(0.9, 0.999), eps=1e-8)
    startup = time.perf_counter() - START
    epoch_seconds, train_loss = [], []
    for epoch in range(args.epochs):
        t0 = time.perf_counter()
        train_loss.append(train_epoch(model, opt, X, y, args.batch_size, generator))
        epoch_seconds.append(time.perf_counter() - t0)
        print(f"epoch {epoch + 1}/{args.epochs}  loss {train_loss[-1]:.4f}  {epoch_seconds[-1]:.2f}s")
    test_loss, test_acc = evaluate(model, *tensors("test"))
    print(f"test accuracy {test_acc:.4f}  test loss {test_loss:.4f}")
    metrics = {
        "backend": "torch", "torch": torch.__version__, "dtype": "float32", "layers": args.layers,
        "epochs": args.epochs, "batch_size": args.batch_size, "lr": args.lr, "optimizer": "adam",
        "seed": args.seed, "threads": args.threads, "epoch_seconds": epoch_seconds, "train_loss": train_loss,
        "test_loss": test_loss, "test_accuracy": test_acc, "startup_seconds": startup,
        "total_seconds": time.perf_counter() - START,
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
    }
    if args.metrics_json:
        with open(args.metrics_json, "w") as f:
            json.dump(metrics, f, indent=2)


if __name__ == "__main__":
    main()
