"""One tolerance table and one helper: how close a kernel's output must be to its oracle.

`assert_close(fast, ref, kernel, dtype)` checks, in this order, the shape, then the dtype (a
kernel given `dtype` data must return exactly `dtype`: no float64 leaking into float32 outputs),
then the values: |fast - ref| <= atol + rtol·|ref| elementwise, with (atol, rtol) from TOLERANCES
keyed by (kernel, dtype). Never relative tolerance alone: a float32 dot product that cancels to
near zero has a huge relative error and a small absolute one.

The oracle `ref` is the reference kernel run in float64 on the same inputs upcast to float64
(float32 values are exact in float64), so a float32 result is judged against the exact-ish answer,
not against another float32 computation with its own rounding.

Scale. atol is absolute, so the table assumes inputs at the scale the network itself sees, and the
tests draw them so: pixels scaled to [0, 1] or standardised (|x| <= 3); He-initialised weights
W ~ N(0, 2/D), which keep every layer's outputs O(1); output-layer gradients dZ = (A - Y)/N of size
<= 1/N; parameters and optimiser gradients O(1); logits O(1) or hostile (up to 1e4 and 1e6).

Unit roundoff u = eps/2: float32 eps = 1.19e-7 (u = 6e-8), float64 eps = 2.22e-16 (u = 1.1e-16).
The float64 numbers are the float32 reasoning times eps64/eps32 = 1.9e-9, rounded up.
"""

import contextlib
import os

import numpy as np

F32 = np.dtype(np.float32)
F64 = np.dtype(np.float64)

EXACT = (0.0, 0.0)

# (kernel, dtype) -> (atol, rtol)
TOLERANCES = {
    # out = pixel·scale + shift. The pixel (uint8) is exact; the fast path rounds scale and shift to
    # the dtype, then the product and the sum: about 3u·(|pixel·scale| + |shift|) <= 3u·4 with
    # |shift| < 1 and |out| < 3 -> 7e-7 in float32, 1.3e-15 in float64.
    ("gather_rows", F32): (2e-6, 1e-6),
    ("gather_rows", F64): (4e-15, 2e-15),
    # out = X·W + b, a dot product of length D <= 784 on BLAS (float32 accumulation in float32).
    # Bound on the accumulated error: sqrt(D)·eps·|x|·|w| (random-walk growth of per-addition
    # rounding, Cauchy-Schwarz for sum |x_i w_i|). With x in [0, 1] (|x| ~ sqrt(784/3) = 16) and He
    # weights (|w| ~ sqrt(2) = 1.4): 28 · 1.2e-7 · 23 = 7.7e-5 -> atol 1e-4; rtol covers the final
    # roundings (product, bias add: ~2u) with margin. float64: 7.7e-5 · 1.9e-9 = 1.4e-13 -> 3e-13.
    # The same bound holds after tanh or logistic: both are 1-Lipschitz (|f'| <= 1, 1/4), so the
    # product's error does not grow, and their own rounding (below) is ~u relative, inside rtol.
    ("linear_forward", F32): (1e-4, 1e-6),
    ("linear_forward", F64): (3e-13, 2e-15),
    # dW = Xᵀ·dZ sums over N <= 128 rows, dX = dZ·Wᵀ over H <= 128 columns, db over N rows, with
    # dZ ~ N(0, 1)/N. The same bound: dW at D = 784: |x_col|·|dz_col| ~ sqrt(N/3)·(1/sqrt(N)) = 0.6
    # -> sqrt(128)·1.2e-7·0.6 = 8e-7; dX at N = 1, H = 128: |dz_row|·|w_row| = sqrt(128)·sqrt(128·2/784)
    # = 6.4 -> 8.7e-6; at D = 1, H = 7 (He weights of fan-in 1): sqrt(7)·1.2e-7·(sqrt(7)·sqrt(14)) =
    # 3e-6. The largest, 8.7e-6, with margin -> atol 2e-5 (float32), 4e-14 (float64).
    # Through tanh or logistic, dX is that product times f' <= 1 (1/4) plus ~u relative: the same bound.
    ("linear_backward", F32): (2e-5, 1e-6),
    ("linear_backward", F64): (4e-14, 2e-15),
    # activation_forward and activation_backward, keyed by the activation's name. max(z, 0) and
    # the ReLU mask select values, they do not round; identity copies: exact.
    ("relu_forward", F32): EXACT,
    ("relu_forward", F64): EXACT,
    ("relu_backward", F32): EXACT,
    ("relu_backward", F64): EXACT,
    ("identity_forward", F32): EXACT,
    ("identity_forward", F64): EXACT,
    ("identity_backward", F32): EXACT,
    ("identity_backward", F64): EXACT,
    # tanh and logistic, forward and backward (through the output A: (1 - A)(1 + A) and A(1 - A)).
    # Both backends compute them in float64, also for float32 data, and round once when storing.
    # float64 operations, relative errors in ulps (1 ulp <= eps·|x|): tanh from libm (glibc documents
    # <= 2 ulp) in the JIT, from NumPy in the reference (validated <= 2 ulp, its
    # umath-validation-set-tanh.csv): <= 4 ulp apart. logistic: e = exp(-|z|) <= 1 ulp (glibc and
    # NumPy's validation set both 1), 1 + e adds <= 1 ulp (e's error shrinks: e/(1 + e) <= 1/2, plus
    # its rounding), the division 0.5 ulp: <= 2.5 ulp each, 5 apart. Backward: 1 - A is exact for
    # A in [1/2, 2] (Sterbenz; 1 + A likewise for A in [-2, -1/2]) and never cancels otherwise, so
    # (1 - A)(1 + A) and A(1 - A) are within 1 ulp, times dA another 1: <= 2 ulp each, 4 apart.
    # Measured on 7e6 values of z (|z| from 1e-6 to 100): 2 eps apart at most. float64 rtol 2e-15
    # (9 eps) covers the 5-ulp bound with margin. float32: the float64 result (within 2.5 ulp of
    # float64) rounds once to float32: |error| <= u32·|x| (6e-8) + 1e-15·|x| -> rtol 1.2e-7 = eps32
    # (measured: exactly u32). Results below the dtype's smallest normal (logistic of z < -87 in
    # float32, e.g. -90 -> 8e-40) are rounded to a fixed absolute step instead: 2^-150 = 7e-46 in
    # float32 -> atol 1e-44; 2^-1075 in float64 (and libm's few ulps of it) -> atol 1e-322.
    ("tanh_forward", F32): (1e-44, 1.2e-7),
    ("tanh_forward", F64): (1e-322, 2e-15),
    ("tanh_backward", F32): (1e-44, 1.2e-7),
    ("tanh_backward", F64): (1e-322, 2e-15),
    ("logistic_forward", F32): (1e-44, 1.2e-7),
    ("logistic_forward", F64): (1e-322, 2e-15),
    ("logistic_backward", F32): (1e-44, 1.2e-7),
    ("logistic_backward", F64): (1e-322, 2e-15),
    # p_j = exp(z_j - m) / s. The fast path forms z_j - m in the dtype (relative rounding u, so
    # exp's result is off by u·(m - z_j) relative, at most u·max_t t·e^-t = u/e absolute), then
    # exp, 1/s, the product and the store: ~4u relative. float32: atol 1e-7 >= u/e = 2.2e-8,
    # rtol 1e-6 >= 4u = 2.4e-7; float64 the same times 1.9e-9.
    ("softmax", F32): (1e-7, 1e-6),
    ("softmax", F64): (1e-15, 2e-15),
    # mean_n of log s_n - (z_y - m). The loss of one row is >= |z_y - m| and >= log s, and each
    # term is rounded relative to itself, so the error is relative to the loss: rtol ~ a few u
    # per row plus N·u for the sum over N <= 128 rows (float64 accumulator in both backends; the
    # float32 fast path forms z_y - m in float32: u32 relative) -> float32 rtol 1e-6, float64
    # rtol 1e-13 (128 · 1.1e-16 = 1.4e-14, ×7). atol covers log s for near-zero losses: s is a sum
    # of K <= 10 exponentials each off by ~1 ulp -> K·u: 6e-7 (float32), 1.1e-15 (float64).
    # The error must NOT grow with the size of the logits themselves: both terms are taken
    # relative to the row max m precisely so that |m| = 1e6 costs nothing.
    ("cross_entropy", F32): (1e-6, 1e-6),
    ("cross_entropy", F64): (1e-13, 1e-13),
    # (A - Y)/N: a subtraction of exact values and one product with 1/N (rounded): ~2u relative.
    ("softmax_xent_backward", F32): (1e-7, 1e-6),
    ("softmax_xent_backward", F64): (1e-16, 2e-15),
    # Fused: the loss as cross_entropy; dZ_y = A_y/N - 1/N cancels when A_y -> 1, leaving an
    # absolute error ~3u/N <= 1.8e-7 at N = 1 in float32 -> atol 1e-6 for both outputs.
    ("softmax_cross_entropy", F32): (1e-6, 1e-6),
    ("softmax_cross_entropy", F64): (1e-13, 1e-13),
    # Adam after up to 5 steps, on p, m, v. Per step m and v carry ~3u relative error (no
    # cancellation in v; m = b1·m + (1-b1)·g can cancel: absolute u·(|m| + |g|/10)), the update
    # lr·m̂/(sqrt(v̂)+eps) ~6u relative to lr, and p rounds once (u·|p|). Five steps: ~5·(u|p| +
    # 6u·lr) with |p| ~ 1 -> 3e-7 absolute in float32 -> atol 1e-6, rtol 1e-5 (30u·5 steps of
    # moment error with margin). float64: atol 2e-15 · 5 -> 1e-14, rtol 2e-14.
    # Both backends flush moments below the dtype's smallest normal (tiny) to 0, a rounding change
    # of at most tiny in m and v and lr·tiny/eps in p (float32: 1.2e-38 and ~1e-33; float64
    # 2.2e-308): far inside these bounds, against a reference in either dtype.
    ("adam_update", F32): (1e-6, 1e-5),
    ("adam_update", F64): (1e-14, 2e-14),
    # p - lr·g: lr rounded, a product, a difference: 3u·(|p| + |lr·g|) -> 2e-7 with |p|, |g| ~ 1.
    ("sgd_update", F32): (1e-6, 1e-6),
    ("sgd_update", F64): (2e-15, 2e-15),
    # a boolean: exact.
    ("all_finite", F32): EXACT,
    ("all_finite", F64): EXACT,
    # Composite entries. "network": mlp_gradients (through loss_and_grads) and mlp_logits of
    # 784-33-17-10 and smaller nets (He weights, N <= 128 rows) against the float64 reference. The first layer dominates: its
    # linear_forward bound (7.7e-5 at D = 784) reaches the logits through W2, W3 (He: norm-preserving
    # on average); the later layers add sqrt(33)·eps·|a|·|w| ~ 3e-6. The loss moves by at most the
    # logit error, and the gradients carry the (smaller) linear_backward bounds -> atol 1e-4, the
    # same as one layer; float64 that times 1.9e-9, rounded up.
    # The same tables judge nets with tanh and logistic layers (1-Lipschitz: errors do not grow
    # through them) and with an L2 penalty alpha <= 1: dW gains alpha/N·W (alpha/N rounded, a
    # product and a sum: 3u·|alpha/N·W| <= 2e-7 with |W| <= 1), the loss ½·alpha·Σ W²/N, whose sum
    # of float32 squares is off by u32 relative: 6e-8 · ½·alpha·ΣW²/N, with ΣW² ~ 2·(33+17+10) = 120
    # for He weights of 784-33-17-10: <= 4e-6 at N = 1, inside rtol·|loss| + atol.
    ("network", F32): (1e-4, 1e-6),
    ("network", F64): (3e-13, 2e-15),
    # "network_hostile": the same with the output weights x2000, so logits reach ~1e4 and softmax
    # saturates. Every error above that passes through the output layer scales with it: atol x2000.
    ("network_hostile", F32): (0.2, 1e-6),
    ("network_hostile", F64): (6e-10, 2e-15),
    # "loss_curve": 20 Adam steps (lr 1e-3), each backend in the same dtype, loss by loss. Each loss is
    # ~2.3 and rounds to u·2.3 = 1.4e-7 (float32); the parameters drift apart by rounding each step,
    # and Adam amplifies that drift where a gradient is ~0 (m/sqrt(v) is ill-conditioned there). The
    # loss averages over all parameters and samples: measured gap 5e-8 (float32), 9e-16 (float64).
    # atol 1e-6, rtol 1e-6 (float32) and 1e-13 (float64) leave a margin of 40-100x for other CPUs and
    # BLAS builds and still fail on a real difference (beta1 in the second moment: 3.5e-2 at step 2).
    ("loss_curve", F32): (1e-6, 1e-6),
    ("loss_curve", F64): (1e-13, 1e-13),
    # "onnx_proba": the probabilities of a model exported by fastnet.export (float32 arithmetic),
    # run in ONNX Runtime, against Model.predict_proba; keyed by the dtype the model was trained in.
    # Trained on Fashion-MNIST: standardised inputs (|x| ~ sqrt(784) = 28, not the 16 of [0, 1]
    # pixels), first-layer columns |w| <= 1.6 (measured after one epoch; He's sqrt(2) = 1.4). So the
    # "network" bound per side is sqrt(784)·eps32·|x|·|w| = 28·1.2e-7·28·1.6 = 1.5e-4 at the first
    # layer, passed on by norm-preserving weights; the later layers (D <= 256, |a| <= 30) add
    # sqrt(256)·1.2e-7·30·1.6 = 9e-5: delta = 2.4e-4 per side. float32 model: fastnet's kernels and
    # ONNX Runtime's Gemm sum in different orders, each within delta: logits up to 2·delta apart.
    # Softmax moves p_j by p_j·|sum_k p_k (dz_j - dz_k)| <= 2·(2·delta)·p_j(1 - p_j) <= delta
    # -> atol 2.5e-4; rtol covers the float32 softmax's own rounding (the "softmax" entry).
    # float64 model: fastnet's side is exact to 1e-13; ONNX Runtime's adds delta and the rounding
    # of weights and scaling to float32, u32·sum|x_i w_i| <= 6e-8·28·1.6 = 3e-6: logits up to
    # 2.5e-4 apart -> atol 1.3e-4. Measured (1 epoch, relu/tanh/logistic/identity, 0-3 hidden
    # layers): 1.5e-6 at most in either dtype, so the bound holds with a margin of 100x.
    # Labels are compared where the top two probabilities differ by more than 2·(atol + rtol):
    # neither can then cross the other.
    ("onnx_proba", F32): (2.5e-4, 1e-6),
    ("onnx_proba", F64): (1.3e-4, 1e-6),
}


def tolerance(kernel, dtype):
    """(atol, rtol) for a kernel's output of dtype; a KeyError names a missing table entry."""
    return TOLERANCES[(kernel, np.dtype(dtype))]


def assert_close(fast, ref, kernel, dtype):
    """Assert fast matches ref for `kernel` on `dtype` inputs: shape, then dtype, then values.

    fast: the output under test (an array, or the Python float/bool a kernel returns). ref: the
    oracle (usually float64). Arrays must have exactly `dtype`; scalars must be Python floats (as
    both backends return losses) or bools. NaN must sit where ref has NaN, inf must equal inf.
    """
    dtype = np.dtype(dtype)
    atol, rtol = tolerance(kernel, dtype)
    assert np.shape(fast) == np.shape(ref), f"{kernel} {dtype}: shape {np.shape(fast)} != {np.shape(ref)}"
    if isinstance(fast, np.ndarray):
        assert fast.dtype == dtype, f"{kernel}: output dtype {fast.dtype}, inputs were {dtype}"
    else:
        assert type(fast) in (float, bool), f"{kernel}: returned {type(fast).__name__}, not a Python float/bool"
    fast64 = np.asarray(fast, dtype=np.float64)
    ref64 = np.asarray(ref, dtype=np.float64)
    same_special = np.isnan(fast64) == np.isnan(ref64)
    assert same_special.all(), f"{kernel} {dtype}: NaN where the reference has none (or vice versa)"
    finite = np.isfinite(ref64)
    assert (fast64[~finite & ~np.isnan(ref64)] == ref64[~finite & ~np.isnan(ref64)]).all(), \
        f"{kernel} {dtype}: infinities differ"
    err = np.where(finite, np.abs(fast64 - ref64), 0.0)
    err = np.where(np.isfinite(fast64) | ~finite, err, np.inf)  # fast inf where ref is finite
    allowed = atol + rtol * np.abs(np.where(finite, ref64, 0.0))
    bad = err > allowed
    if bad.any():
        worst = np.unravel_index(np.argmax(np.where(bad, err - allowed, -np.inf)), np.shape(err)) if np.ndim(err) else ()
        raise AssertionError(
            f"{kernel} {dtype}: {int(bad.sum())} of {bad.size} values outside atol={atol:g} + rtol={rtol:g}·|ref|; "
            f"worst at {worst}: fast={fast64[worst]!r} ref={ref64[worst]!r} |diff|={err[worst]:.3g} "
            f"allowed={allowed[worst]:.3g}"
        )


@contextlib.contextmanager
def blas_threads(n):
    """Limit BLAS to n threads inside the block (a no-op where threadpoolctl is not installed).

    The kernel tests run thousands of small products; on a busy 2-core machine OpenBLAS's threads
    spin against each other and each product takes 10-30x longer than on one thread.
    """
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:
        yield
        return
    with threadpool_limits(n if n else os.cpu_count()):
        yield
