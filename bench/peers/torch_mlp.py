"""python -m bench.peers.torch_mlp: the seed recipe in PyTorch, eager or with the whole step compiled.

nn.Linear layers with ReLU between them, loaded with fastnet's initial weights; mean
cross-entropy; torch.optim.Adam with the recipe's betas and eps. The step (gather of the batch,
forward, backward, Adam) is one function: called as it is (eager, with Adam's fused CPU kernel,
fused=True, which was faster than the default for-loop Adam:
docs/performance.md#constants-and-where-they-come-from), or through torch.compile (--compile, the
default Adam, whose step Dynamo traces and Inductor compiles; dynamic=False, so the full batches
and the partial last one get one static graph each, both compiled during the first epoch). Dynamo
splits the compiled step at loss.backward() and at zero_grad (forward and backward are still
compiled together by AOTAutograd); torch._dynamo.config.trace_autograd_ops and compiled_autograd
did not remove the breaks and were no faster.

Threads: the process is pinned to --threads cores before torch is imported, and
torch.set_num_threads / set_num_interop_threads(--threads) follow. Checked in the metrics: at 1
thread get_num_threads() and get_num_interop_threads() are 1, the process has 1 OS thread and it may
run on core 0 only (cores_of_all_threads); at 2, they are 2, 4 OS threads, cores [0, 1].
"""

import time

START = time.perf_counter()

from bench.peers import pin_from_argv  # noqa: E402  (stdlib only: nothing has started threads yet)

if __name__ == "__main__":
    pin_from_argv()

import torch  # noqa: E402  (after the pin: threads started at import keep the mask they saw)
from torch import nn  # noqa: E402

from bench.peers import common  # noqa: E402


def build(layers):
    """Linear layers with ReLU between them; nn.Linear holds W transposed, (D_out, D_in)."""
    modules = []
    for W, b in layers:
        linear = nn.Linear(*W.shape)
        with torch.no_grad():
            linear.weight.copy_(torch.from_numpy(W.T))
            linear.bias.copy_(torch.from_numpy(b))
        modules += [linear, nn.ReLU()]
    return nn.Sequential(*modules[:-1])


def main(argv=None):
    p = common.parser(__doc__.splitlines()[0])
    p.add_argument("--compile", action="store_true", help="torch.compile the whole step")
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    torch.set_num_interop_threads(args.threads)
    layers, rng = common.initial(args)
    X, y = (torch.from_numpy(a) for a in common.load("train", args.data_dir))
    model = build(layers)
    opt = torch.optim.Adam(model.parameters(), lr=common.LR, betas=(common.BETA1, common.BETA2), eps=common.EPS,
                           fused=not args.compile)

    def step(index):
        """One training step on the samples X[index]; returns the batch's mean loss (not synced)."""
        loss = nn.functional.cross_entropy(model(X[index]), y[index])
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
        return loss.detach()

    if args.compile:
        step = torch.compile(step, dynamic=False)

    def epoch(order):
        total, batches = torch.zeros(()), common.batches(torch.from_numpy(order), args.batch_size)
        for index in batches:
            total += step(index) * len(index)
        return float(total) / len(order), len(batches)

    @torch.inference_mode()
    def logits(images):
        return model(torch.from_numpy(images)).numpy()

    common.run(args, START, rng, len(y), epoch, logits, peer="torch compile" if args.compile else "torch eager",
               version=torch.__version__, library_threads=torch.get_num_threads(),
               interop_threads=torch.get_num_interop_threads())


if __name__ == "__main__":
    main()
