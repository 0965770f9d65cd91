"""Numba twins of kernels.reference: same names, same signatures, same results within rounding.

Each public function is a thin wrapper that casts constants to the data's dtype (Numba would
promote float32 x Python float to float64) and calls a private compiled core that takes its outputs
first and only loops. A training step's matrix products stay on NumPy's BLAS (kernels.blas):
hand-written loops are slower than BLAS here. What the JIT adds is fusion: bias and activation in
one pass over the product, max/exp/normalise/loss/gradient of the output layer in one pass, the
optimiser's update of each band of parameters right after its gradients, and whole-network kernels
that run many training steps (mlp_train_steps) or a batch's logits (mlp_logits) in one compiled call.

Evaluation (mlp_logits) does not use BLAS: BLAS computes a row of a product with other code
depending on where the row stands in the block and on how many rows the block has, so a row's
logits would change with its neighbours and with the threads that cut the batch. _tile_product
sums every entry in the order of the inputs, the same operations for every row: a row's logits are
the same bits wherever it stands, in tiles of TILE_ROWS rows on any number of threads.

The training step (_mlp): its arguments come in four named tuples, Network (sizes, activation
codes, params, grads), Batches (images, labels, their scaling, the order and the steps' starts),
Scratch (the workspace, the layout of its blocks, the per-part results) and Update (the
optimiser's code, its state, the per-step constants). Each step is three passes, each a parallel
loop over the parts of the batch on Numba's threads (their docstrings read in this order):
_first_layer_piece (the first layer cut by its inputs), _forward_rows and _backward_rows (the rest
of the forward pass, the loss and the deltas, by rows of the batch), _weight_gradients (dW, db and
the update, by bands of the parameters). The update is chosen by its code (kernels.OPTIMIZERS),
as activations are. step_pass runs one pass as one call, for bench.profile_step. BLAS's own threads
must be limited to one (BLAS_THREADS), or they spin against Numba's (an epoch 0.25 -> 0.35 s).

Compile time: each pass kernel, and _pass above them, is compiled once on its own and called
through a fixed symbol (kernels.linking), instead of being compiled again inside every caller;
kernels that only compiled code calls have no Python wrapper. docs/performance.md, "Compile time".

Shapes: N rows in the batch, D inputs of a layer, H outputs of a layer, K classes, P parameters.
"""

import itertools
import json
import math
import os
import sys
import time
from collections import namedtuple

import numba
import numpy as np
from numba import njit, prange

from . import (ACTIVATIONS, ADAM, FASTMATH, GD, JIT_OPTIONS, LOGISTIC, OPTIMIZER_HYPER, OPTIMIZER_STATE, OPTIMIZERS,
               RELU, TANH, TILE_ROWS, activation_names, parameter_count)
from .blas import gemm
from . import parallel
from .linking import apart, internal, light, twin_of


def _njit(**options):
    """njit with these options, its on-disk cache a kernels.linking.KernelCache."""
    return lambda fn: light(njit(**options)(fn))


_jit = _njit(**JIT_OPTIONS)
_jit_fast = _njit(fastmath=FASTMATH, **JIT_OPTIONS)
# Kernels that only compiled code calls: no Python wrapper (kernels.linking.internal)
_internal = internal(JIT_OPTIONS)
_internal_fast = internal(dict(JIT_OPTIONS, fastmath=FASTMATH))


def _python(kernel):
    """The Python-callable twin of an internal kernel that Python code calls too (kernels.linking.twin_of):
    made on first use, so that a training run, which calls only the compiled step, compiles none."""
    twin = _TWINS.get(kernel)
    if twin is None:
        twin = _TWINS[kernel] = light(twin_of(kernel, JIT_OPTIONS))
    return twin


_TWINS = {}
# Only prange loops run in parallel: np.zeros or a slice assignment would otherwise become parallel
# loops of their own, each compiled apart, for arrays of a few elements.
_PRANGE_ONLY = {"prange": True, "numpy": False, "reduction": False, "setitem": False, "stencil": False,
                "comprehension": False, "inplace_binop": False, "fusion": False}
_jit_parallel = _njit(parallel=_PRANGE_ONLY, **JIT_OPTIONS)

BLAS_THREADS = 1  # BLAS runs inside each of Numba's threads, one thread each


@_internal
def _gather(out, images, index, scale, shift, c0, c1):
    """out[i, c0:c1] = images[index[i], c0:c1] * scale[c0:c1] + shift[c0:c1] for every row i."""
    # Shuffled rows are scattered over the whole data set: first load one byte per cache line of
    # every row. Those loads are independent, so the memory system serves many rows at once; the
    # converting pass then finds them in cache (measured 33 -> 20 ms per epoch here).
    touched = 0
    for i in range(index.shape[0]):
        src = images[index[i]]
        for j in range(c0, c1, 64):
            touched += int(src[j])  # an int, also when this runs as Python (a uint8 would wrap)
    a, b = scale[c0:c1], shift[c0:c1]
    for i in range(index.shape[0]):
        src, dst = images[index[i], c0:c1], out[i, c0:c1]
        for j in range(dst.shape[0]):
            dst[j] = src[j] * a[j] + b[j]
    return touched


def gather_rows(images, index, scale, shift, out):
    """out[i] = images[index[i]] * scale + shift, in one pass (the uint8 -> float scaling fused in).

    scale and shift (D,) are used as given when they already have out's dtype (the model keeps
    them so); otherwise they are converted first, since Numba would promote the arithmetic.
    """
    _python(_gather)(out, images, index, scale.astype(out.dtype, copy=False), shift.astype(out.dtype, copy=False), 0,
            out.shape[1])
    return out


@_internal
def _chunk(P, c, chunks):
    """[lo, hi) of chunk c when P elements are cut into `chunks` ranges starting on multiples of 16
    elements (64-byte cache lines apart in float32), so no two threads write one cache line."""
    lo = (P * c // chunks) // 16 * 16
    hi = P if c == chunks - 1 else (P * (c + 1) // chunks) // 16 * 16
    return lo, hi


# The activations of kernels.ACTIVATIONS, dispatched by code inside compiled loops (LLVM hoists
# the test of a loop-invariant code out of the loop). Twins of kernels.reference's
# ACTIVATION_FUNCTIONS: _forward is f(z), _backward is g·f'(z) written through the output a = f(z).
# tanh and logistic work in float64 as the reference does (float32 data too), rounded once when stored.
@_internal
def _forward(code, z):
    if code == RELU:
        return max(z, 0)
    if code == TANH:
        return math.tanh(np.float64(z))
    if code == LOGISTIC:
        e = math.exp(-abs(np.float64(z)))  # e^-|z| <= 1 cannot overflow: 1/(1 + e) for z >= 0, e/(1 + e) below
        return (1.0 if z >= 0 else e) / (1 + e)
    return z  # IDENTITY


@_internal
def _backward(code, g, a):
    if code == RELU:
        # a select, not a branch around a store, so the loop vectorises (4.2 -> 1.1 ms an epoch);
        # as the reference, a NaN activation passes no gradient (NaN > 0 is False)
        return g if a > 0 else 0
    if code == TANH:
        x = np.float64(a)
        return g * (1 - x) * (1 + x)  # 1 - a², without its cancellation near |a| = 1
    if code == LOGISTIC:
        x = np.float64(a)
        return g * x * (1 - x)
    return g  # IDENTITY


@_internal
def _bias_activation(Z, b, code):
    for i in range(Z.shape[0]):
        for j in range(Z.shape[1]):
            Z[i, j] = _forward(code, Z[i, j] + b[j])


def linear_forward(X, W, b, out, activation):
    """out = f(X·W + b): the product on BLAS, bias and activation fused into one pass over out."""
    np.matmul(X, W, out=out)
    _python(_bias_activation)(out, b, ACTIVATIONS.index(activation))
    return out


@_jit
def _activation_forward(out, Z, code):
    for i in range(Z.shape[0]):
        for j in range(Z.shape[1]):
            out[i, j] = _forward(code, Z[i, j])


def activation_forward(Z, out, activation):
    """out = f(Z) in one pass."""
    _activation_forward(out, Z, ACTIVATIONS.index(activation))
    return out


@_jit
def _activation_backward(out, dA, A, code):
    for i in range(A.shape[0]):
        for j in range(A.shape[1]):
            out[i, j] = _backward(code, dA[i, j], A[i, j])


def activation_backward(dA, A, out, activation):
    """out = dA·f'(Z) in one pass, through the activation's output A."""
    _activation_backward(out, dA, A, ACTIVATIONS.index(activation))
    return out


@_internal_fast
def _softmax_row(out, z):
    """out = softmax(z) for one row; returns log sum exp(z - max z). exp is stored, then scaled."""
    m = z[0]
    for j in range(1, z.shape[0]):
        m = max(m, z[j])
    s = 0.0  # float64 accumulator
    for j in range(z.shape[0]):
        e = math.exp(z[j] - m)  # z - max <= 0: exp cannot overflow
        out[j] = e
        s += e
    inv = 1.0 / s
    for j in range(z.shape[0]):
        out[j] = out[j] * inv
    return m, math.log(s)


@_jit
def _softmax(out, Z):
    for i in range(Z.shape[0]):
        _softmax_row(out[i], Z[i])


def softmax(Z, out):
    """Row-wise stable softmax: max, exp and normalise in one pass per row."""
    _softmax(out, Z)
    return out


@_jit  # not fastmath: reassociation would regroup log(s) - (z_y - m) and cancel large m
def _cross_entropy(Z, y):
    total = 0.0
    for i in range(Z.shape[0]):
        z = Z[i]
        m = z[0]
        for j in range(1, z.shape[0]):
            m = max(m, z[j])
        s = 0.0
        for j in range(z.shape[0]):
            s += math.exp(z[j] - m)
        total += math.log(s) - (z[y[i]] - m)  # both terms relative to m: no cancellation of m
    return total / Z.shape[0]


def cross_entropy(Z, y):
    """Mean of log sum exp(Z[n] - m) - (Z[n, y[n]] - m) over rows, accumulated in float64."""
    return float(_cross_entropy(Z, y))


@_jit
def _softmax_xent_backward(out, A, y, inv_n):
    for i in range(A.shape[0]):
        for j in range(A.shape[1]):
            out[i, j] = A[i, j] * inv_n
        out[i, y[i]] = (A[i, y[i]] - 1) * inv_n


def softmax_xent_backward(A, y, out):
    """out = (A - Y) / N without forming the one-hot Y."""
    _softmax_xent_backward(out, A, y, out.dtype.type(1.0 / len(y)))
    return out


@_internal
def _softmax_cross_entropy(dZ, Z, y, inv_n):
    total = 0.0
    for i in range(Z.shape[0]):
        d = dZ[i]
        m, log_s = _softmax_row(d, Z[i])
        total += log_s - (Z[i, y[i]] - m)
        for j in range(d.shape[0]):
            d[j] = d[j] * inv_n
        d[y[i]] -= inv_n
    return total / Z.shape[0]


def softmax_cross_entropy(Z, y, dZ):
    """Fused output layer in one pass per row: loss from logits, and dZ = (softmax(Z) - Y) / N."""
    return float(_python(_softmax_cross_entropy)(dZ, Z, y, dZ.dtype.type(1.0 / len(y))))


@_internal
def _column_sums(out, dZ):
    for j in range(dZ.shape[1]):
        out[j] = 0
    for i in range(dZ.shape[0]):
        for j in range(dZ.shape[1]):
            out[j] += dZ[i, j]


@_internal
def _times_derivative(G, A, code):
    """G = G·f'(Z) in place, through the activation's output A."""
    for i in range(G.shape[0]):
        g, a = G[i], A[i]
        for j in range(g.shape[0]):
            g[j] = _backward(code, g[j], a[j])


def linear_backward(dZ, X, W, dW, db, dX, activation):
    """dW = Xᵀ·dZ and dX = dZ·Wᵀ on BLAS; db a column sum; the activation's derivative applied to dX in place."""
    np.matmul(X.T, dZ, out=dW)
    _python(_column_sums)(db, dZ)
    if dX is not None:
        np.matmul(dZ, W.T, out=dX)
        _python(_times_derivative)(dX, X, ACTIVATIONS.index(activation))


# ----------------------------------------------------------------------------- the training step
# What the step kernels take, grouped as llm.c groups its tensors. Python builds them once per call
# (_steps, mlp_logits); every kernel of the step takes them whole and reads what it needs.
Network = namedtuple("Network", "sizes activations params grads")
#   sizes (L+1,) = (D0, ..., K) and activations (L,) codes (kernels); params, grads (P,) flat buffers
Batches = namedtuple("Batches", "images labels scale shift order starts")
#   step s trains on rows order[starts[s]:starts[s + 1]] of images (M, D0), each row mapped to
#   inputs by x·scale + shift (D0,) on the way in; labels (M,) their classes
Scratch = namedtuple("Scratch", "X acts deltas y partials logits at results parts pieces")
#   kernels.MLPWork's buffers: X (rows·D0) the gathered inputs, acts and deltas (rows·(D1+...+DL)) a
#   block per layer, y (rows,) the batch's labels, partials the first layer's pieces 1..; logits:
#   where a LOGITS pass writes (a step's go to the last block of acts); at: _layout's offsets;
#   results (parts, 4): each part's RESULT_* columns; parts: the parts a batch is cut into (a
#   LOGITS pass: its tiles of TILE_ROWS rows); pieces: the pieces of the first layer's product (0:
#   gathered and multiplied by rows instead)
Update = namedtuple("Update", "code m v steps beta1 beta2 one_minus_beta1 one_minus_beta2 eps zero tiny")
#   the optimiser (its code: kernels.OPTIMIZERS, or NO_UPDATE), its state (Adam's moments; empty
#   arrays for gradient descent), steps (K, 5): each step's STEP_* columns, and the constants of
#   AdamConstants that every step shares, in the params' dtype (no tuple inside: a parallel loop
#   cannot take a tuple within a tuple)

STEP_LR, STEP_M_SCALE, STEP_V_SCALE, STEP_INV_N, STEP_DECAY = range(5)  # columns of Update.steps:
#   the learning rate, Adam's bias corrections 1/(1 - beta^t), 1/n and the L2 term's alpha/n
RESULT_LOSS, RESULT_FINITE, RESULT_PENALTY, RESULT_CORRECT = range(4)  # columns of Scratch.results: a
#   part's summed loss (rows), 0 when a parameter of its band is not finite (bands), its band's Σ W²
#   (bands), its rows predicted right, before the update (rows)
NO_UPDATE = -1  # Update.code of a step that only computes gradients (mlp_gradients)

# Where layer l's pieces start in the flat buffers (element offsets): the columns of the (L, 4)
# table _layout returns. In a block of rows, row r starts r·(its width) further on.
W_AT = 0  # params: W_l (D_l, D_l+1)                     grads: dW_l
B_AT = 1  # params: b_l (D_l+1,)                         grads: db_l
IN_AT = 2  # the layer's input (rows, D_l): for l = 0 in X, the gathered pixels; otherwise in acts,
#            layer l-1's output A_l-1, and in deltas its gradient dZ_l-1
OUT_AT = 3  # acts: A_l (rows, D_l+1), the layer's output (the last layer's: the logits (rows, K))
#             deltas: dZ_l (rows, D_l+1), the loss's gradient w.r.t. the layer's pre-activation


def _layout(sizes, rows):
    """The (L, 4) offsets above, for the network of `sizes` and a workspace of `rows` rows."""
    at = np.empty((len(sizes) - 1, 4), np.int64)
    p = a = 0  # params and grads: W0, b0, W1, b1, ...; acts and deltas: a block of `rows` rows a layer
    for l, (d_in, d_out) in enumerate(itertools.pairwise(sizes)):
        at[l] = p, p + d_in * d_out, 0 if l == 0 else a - rows * d_in, a
        p += d_in * d_out + d_out
        a += rows * d_out
    return at


@_internal
def _batch(s, data):
    """Step s's rows: the index into images."""
    return data.order[data.starts[s] : data.starts[s + 1]]


@_internal
def _valid_rows(s, net, data, work):
    """Check step s's rows and their labels, copying the labels into work.y: False if any is out of range."""
    index, classes = _batch(s, data), net.sizes[-1]
    for i in range(index.shape[0]):
        if index[i] < 0 or index[i] >= data.images.shape[0]:
            return False
    for i in range(index.shape[0]):
        label = data.labels[index[i]]
        if label < 0 or label >= classes:
            return False
        work.y[i] = label
    return True


# The passes of a step. Each is one part w of a parallel loop over the parts of step s's batch, and
# each takes (w, s, net, data, work, update): compiled once on its own (kernels.linking).
@_internal
def _first_layer_piece(w, s, net, data, work, update):
    """FIRST_LAYER, piece w: the inputs c0..c1 of every row (a share of the D0 inputs, cut on 64-byte
    boundaries) gathered into those columns of X, times rows c0..c1 of W0. Piece 0 goes to the first
    layer's output block, piece w > 0 to block w - 1 of partials; the rows pass sums them.

    Cut this way, each thread gathers and multiplies the same inputs and the same rows of W0 (with
    their Adam moments) that its band of _weight_gradients reads and updates: those stay in its core's
    cache from step to step, where a cut by rows of the batch sends all of W0 and half of X from core
    to core.
    """
    index, sizes, at = _batch(s, data), net.sizes, work.at
    n, d_in, d_out, rows = index.shape[0], sizes[0], sizes[1], work.X.shape[0] // sizes[0]
    c0, c1 = _chunk(d_in, w, work.pieces)
    out, out_at = (work.acts, at[0, OUT_AT]) if w == 0 else (work.partials, (w - 1) * rows * d_out)
    if c1 > c0:
        _gather(work.X[: n * d_in].reshape(n, d_in), data.images, index, data.scale, data.shift, c0, c1)
        gemm(False, False, n, d_out, c1 - c0, work.X, c0, d_in, net.params, at[0, W_AT] + c0 * d_out, d_out, out,
             out_at, d_out)
    else:
        out[out_at : out_at + n * d_out] = 0


@_internal
def _add_pieces(Z, partials, pieces, rows, lo):
    """Z (m, H) += pieces 1.. of the first layer's product (rows lo..lo+m of each), in piece order."""
    m, H = Z.shape
    for k in range(1, pieces):
        at = ((k - 1) * rows + lo) * H
        P = partials[at : at + m * H].reshape(m, H)
        for i in range(m):
            for j in range(H):
                Z[i, j] += P[i, j]


@_internal
def _forward_rows(w, s, net, data, work, update):
    """ROWS, part w: its rows lo..hi of the batch through every layer (BLAS, then a
    bias/activation pass) into acts; the last layer writes work.logits. With no pieces the rows are
    gathered into X and the first layer multiplied here; otherwise its pieces are summed here."""
    index, sizes, at, X, acts = _batch(s, data), net.sizes, work.at, work.X, work.acts
    n, L, rows = index.shape[0], sizes.shape[0] - 1, X.shape[0] // sizes[0]
    lo, hi = n * w // work.parts, n * (w + 1) // work.parts
    m = hi - lo
    if work.pieces == 0:
        _gather(X[lo * sizes[0] : hi * sizes[0]].reshape(m, sizes[0]), data.images, index[lo:hi], data.scale,
                data.shift, np.int64(0), sizes[0])  # not a literal 0: that would compile _gather once more
    for l in range(L):
        d_in, d_out = sizes[l], sizes[l + 1]
        inputs = X if l == 0 else acts
        b = net.params[at[l, B_AT] : at[l, B_AT] + d_out]
        dest, out = (work.logits, lo * d_out) if l == L - 1 else (acts, at[l, OUT_AT] + lo * d_out)
        Z = dest[out : out + m * d_out].reshape(m, d_out)
        if l == 0 and work.pieces > 0:
            _add_pieces(Z, work.partials, work.pieces, rows, lo)
        else:
            gemm(False, False, m, d_out, d_in, inputs, at[l, IN_AT] + lo * d_in, d_in, net.params, at[l, W_AT], d_out,
                 dest, out, d_out)
        _bias_activation(Z, b, net.activations[l])


@_internal
def _backward_rows(w, s, net, data, work, update):
    """ROWS, part w: its rows' fused softmax-cross-entropy, then each layer's delta down to the first
    hidden layer (dZ·Wᵀ on BLAS, then the derivative of the layer below's activation). Writes the
    rows' summed loss and how many of them the logits predict right (the epoch's running accuracy)
    into work.results[w]."""
    sizes, at, acts, deltas = net.sizes, work.at, work.acts, work.deltas
    n, L, classes = data.starts[s + 1] - data.starts[s], sizes.shape[0] - 1, sizes[-1]
    lo, hi = n * w // work.parts, n * (w + 1) // work.parts
    m, out = hi - lo, at[L - 1, OUT_AT]  # the logits' block
    Z = acts[out + lo * classes : out + hi * classes].reshape(m, classes)
    dZ = deltas[out + lo * classes : out + hi * classes].reshape(m, classes)
    loss = _softmax_cross_entropy(dZ, Z, work.y[lo:hi], update.steps[s, STEP_INV_N]) * m
    correct = 0
    for i in range(m):
        correct += _argmax(Z[i]) == work.y[lo + i]
    for l in range(L - 1, 0, -1):
        d_in, d_out = sizes[l], sizes[l + 1]
        below = at[l, IN_AT]
        gemm(False, True, m, d_in, d_out, deltas, at[l, OUT_AT] + lo * d_out, d_out, net.params, at[l, W_AT], d_out,
             deltas, below + lo * d_in, d_in)
        _times_derivative(deltas[below + lo * d_in : below + hi * d_in].reshape(m, d_in),
                          acts[below + lo * d_in : below + hi * d_in].reshape(m, d_in), net.activations[l - 1])
    work.results[w, RESULT_LOSS], work.results[w, RESULT_CORRECT] = loss, correct


@_internal
def _argmax(z):
    """np.argmax of a row: the first of its largest values, or of its NaNs."""
    best = 0
    for j in range(z.shape[0]):
        if z[j] != z[j]:
            return j
        if z[j] > z[best]:
            best = j
    return best


@_internal_fast  # reassociation lets the sum of squares vectorise; for a given band it is always the same sum
def _add_l2(g, p, decay):
    """g += decay·p in place, returning Σ p² (float64): the L2 penalty's gradient and sum on one band of a W."""
    total = 0.0
    for i in range(p.shape[0]):
        pi = p[i]
        g[i] += decay * pi
        total += pi * pi
    return total


@_internal
def _update(code, p, g, m, v, c):
    """The optimiser of `code` on one band: p, and its state m, v, from the gradient g; constants c
    (AdamConstants of the step). True when every updated parameter is finite."""
    if code == ADAM:
        return _adam(p, g, m, v, c)
    if code == GD:
        return _sgd(p, g, c.lr, c.zero)
    return True


@_internal
def _weight_gradients(w, s, net, data, work, update):
    """BANDS, share w: every dW = Aᵀ·dZ + decay·W and db = Σ dZ over all n rows of the batch, then
    the update (Update.code) of that share right away, while its gradients are in cache. Into
    work.results[w]: 0 when an updated parameter is not finite, Σ W² over the share's weights (0
    when decay is 0).

    Each share is a band of rows of each W (and of entries of each b), so no two threads write the
    same gradient and none has to be summed: each entry is one whole-batch dot product on BLAS.
    The L2 term (decay = alpha/N) is added to the band of dW right after BLAS wrote it, while it is
    in cache, and the band's Σ W² read in the same loop; with decay 0 nothing is added at all.
    """
    sizes, at, params, grads, parts = net.sizes, work.at, net.params, net.grads, work.parts
    n, c = data.starts[s + 1] - data.starts[s], update.steps[s]
    decay, u = c[STEP_DECAY], update
    step = AdamConstants(c[STEP_LR], u.beta1, u.beta2, u.one_minus_beta1, u.one_minus_beta2, c[STEP_M_SCALE],
                         c[STEP_V_SCALE], u.eps, u.zero, u.tiny)
    finite, penalty = True, 0.0
    for l in range(sizes.shape[0] - 1):
        d_in, d_out = sizes[l], sizes[l + 1]
        W, bias, out = at[l, W_AT], at[l, B_AT], at[l, OUT_AT]
        # the share's rows of W; for W0 the inputs of _first_layer_piece w, so they stay on one core
        r0, r1 = _chunk(d_in, w, parts) if l == 0 else (d_in * w // parts, d_in * (w + 1) // parts)
        if r1 > r0:
            inputs = work.X if l == 0 else work.acts
            gemm(True, False, r1 - r0, d_out, n, inputs, at[l, IN_AT] + r0, d_in, work.deltas, out, d_out,
                 grads, W + r0 * d_out, d_out)
            if decay != 0:
                lo, hi = W + r0 * d_out, W + r1 * d_out
                penalty += _add_l2(grads[lo:hi], params[lo:hi], decay)
        c0, c1 = d_out * w // parts, d_out * (w + 1) // parts  # the share's entries of b
        _column_sums(grads[bias + c0 : bias + c1], work.deltas[out : out + n * d_out].reshape(n, d_out)[:, c0:c1])
        for lo, hi in ((W + r0 * d_out, W + r1 * d_out), (bias + c0, bias + c1)):
            finite &= _update(update.code, params[lo:hi], grads[lo:hi], update.m[lo:hi], update.v[lo:hi], step)
    work.results[w, RESULT_FINITE], work.results[w, RESULT_PENALTY] = finite, penalty


# ----------------------------------------------------------------------------- evaluation
# mlp_logits cuts a batch into tiles of TILE_ROWS rows (kernels), one part of the LOGITS pass each:
# the cut never follows the threads. The bits do not depend on it either (_tile_product).


@_internal  # not fastmath: no reassociation, no fused multiply-add; every entry the same sum
def _tile_product(Z, X, W):
    """Z (m, H) = X (m, D)·W (D, H) for m a multiple of 4, each entry summed in the order of the
    inputs: z = (((x_0·w_0 + x_1·w_1) + x_2·w_2) + ...), each product and each sum rounded. Every
    row gets the same operations, wherever it stands and however many rows there are, so its bits
    are its own. Four rows of Z are updated by four inputs at a time: one pass over a row of W
    serves sixteen products, and the vectorised loop over the H columns changes no sum."""
    m, D = X.shape
    H = W.shape[1]
    D4 = D - D % 4
    for i in range(0, m, 4):
        za, zb, zc, zd = Z[i], Z[i + 1], Z[i + 2], Z[i + 3]
        xa, xb, xc, xd = X[i], X[i + 1], X[i + 2], X[i + 3]
        for j in range(H):
            za[j], zb[j], zc[j], zd[j] = 0, 0, 0, 0
        for k in range(0, D4, 4):
            w0, w1, w2, w3 = W[k], W[k + 1], W[k + 2], W[k + 3]
            a0, a1, a2, a3 = xa[k], xa[k + 1], xa[k + 2], xa[k + 3]
            b0, b1, b2, b3 = xb[k], xb[k + 1], xb[k + 2], xb[k + 3]
            c0, c1, c2, c3 = xc[k], xc[k + 1], xc[k + 2], xc[k + 3]
            d0, d1, d2, d3 = xd[k], xd[k + 1], xd[k + 2], xd[k + 3]
            for j in range(H):
                p, q, r, t = w0[j], w1[j], w2[j], w3[j]
                za[j] = za[j] + a0 * p + a1 * q + a2 * r + a3 * t
                zb[j] = zb[j] + b0 * p + b1 * q + b2 * r + b3 * t
                zc[j] = zc[j] + c0 * p + c1 * q + c2 * r + c3 * t
                zd[j] = zd[j] + d0 * p + d1 * q + d2 * r + d3 * t
        for k in range(D4, D):
            w, a, b, c, d = W[k], xa[k], xb[k], xc[k], xd[k]
            for j in range(H):
                p = w[j]
                za[j], zb[j], zc[j], zd[j] = za[j] + a * p, zb[j] + b * p, zc[j] + c * p, zd[j] + d * p


@_internal
def _logits_tile(w, s, net, data, work, update):
    """LOGITS, tile w: rows w·TILE_ROWS.. of the batch (TILE_ROWS, fewer in the last tile) through
    every layer into work.logits: gathered into a block of the tile's own, zero rows after them up
    to a multiple of 4 (_tile_product takes four at a time), then each layer's product and a
    bias/activation pass. _forward_rows without BLAS; work's other buffers are not used."""
    index, sizes, at, params = _batch(s, data), net.sizes, work.at, net.params
    lo = w * TILE_ROWS
    hi = min(index.shape[0], lo + TILE_ROWS)
    m = hi - lo
    A = np.empty(((m + 3) // 4 * 4, sizes[0]), params.dtype)
    _gather(A[:m], data.images, index[lo:hi], data.scale, data.shift, np.int64(0), sizes[0])
    for i in range(m, A.shape[0]):
        for j in range(sizes[0]):
            A[i, j] = 0
    for l in range(sizes.shape[0] - 1):
        d_in, d_out = sizes[l], sizes[l + 1]
        Z = np.empty((A.shape[0], d_out), params.dtype)
        _tile_product(Z, A, params[at[l, W_AT] : at[l, W_AT] + d_in * d_out].reshape(d_in, d_out))
        _bias_activation(Z, params[at[l, B_AT] : at[l, B_AT] + d_out], net.activations[l])
        A = Z
    K = sizes[-1]
    out = work.logits[lo * K : hi * K].reshape(m, K)
    for i in range(m):
        for j in range(K):
            out[i, j] = A[i, j]


_first_layer_piece_apart, _forward_rows_apart, _backward_rows_apart, _weight_gradients_apart, _logits_tile_apart = (
    apart(k) for k in (_first_layer_piece, _forward_rows, _backward_rows, _weight_gradients, _logits_tile))

# The kinds of pass _mlp runs, each a parallel loop over the parts of a batch: a training step is
# FIRST_LAYER, ROWS, BANDS (_STEP); logits are one LOGITS pass, every layer by tiles of rows.
FIRST_LAYER, ROWS, BANDS, LOGITS = 0, 1, 2, 3


@_internal
def _pass(kind, w, s, net, data, work, update):
    """Part w of one pass of kind FIRST_LAYER, ROWS, BANDS or LOGITS of step s; its results into
    work.results[w]."""
    if kind == FIRST_LAYER:
        if w < work.pieces:
            _first_layer_piece_apart(w, s, net, data, work, update)
    elif kind == BANDS:
        _weight_gradients_apart(w, s, net, data, work, update)
    elif kind == LOGITS:
        _logits_tile_apart(w, s, net, data, work, update)
    else:
        n = data.starts[s + 1] - data.starts[s]
        if n * (w + 1) // work.parts > n * w // work.parts:
            _forward_rows_apart(w, s, net, data, work, update)
            _backward_rows_apart(w, s, net, data, work, update)


_pass_apart = apart(_pass)


@_jit_parallel
def _mlp(passes, net, data, work, update, alpha, limit, losses, correct):
    """Steps s = 0, 1, ... on the batches of `data`, each the passes in order, each pass a parallel
    loop over the parts of the batch:

    FIRST_LAYER  gathers each piece's share of the input columns into X and multiplies it by the
                 same rows of W0, into A0's block (piece 0) or partials (pieces 1..)
    ROWS         each part's rows: the pieces summed, bias and activation, the later layers into
                 acts, softmax-cross-entropy into deltas' last block, dZ of every layer down to the
                 first into deltas; the rows' loss into results
    BANDS        each part's band of rows of every W and entries of every b: dW = Aᵀ·dZ (+ L2),
                 db, and the optimiser's update of the band (params, m, v); Σ W² into results
    LOGITS       each tile's rows through every layer into work.logits (no step: logits only)

    losses[s] gets step s's loss with its L2 penalty (float64), correct[s] its rows predicted right
    before its update (where correct has room). Stops after a step whose loss is not
    finite or above limit, or that leaves a parameter not finite. Returns (steps taken, rows valid,
    parameters finite); a step with an invalid row or label is not taken. One parallel loop runs
    every pass; its callees are compiled once each (kernels.linking).
    """
    training = passes[0] != LOGITS
    results = work.results
    for s in range(data.starts.shape[0] - 1):
        n = data.starts[s + 1] - data.starts[s]
        if training and not _valid_rows(s, net, data, work):
            return s, False, True
        results[:, RESULT_LOSS], results[:, RESULT_FINITE], results[:, RESULT_PENALTY] = 0.0, 1.0, 0.0
        results[:, RESULT_CORRECT] = 0.0
        for kind in passes:
            count = work.pieces if kind == FIRST_LAYER else work.parts  # a name: prange of an inline if is serial
            for w in prange(count):  # w is unsigned inside the parallel loop: cast, or _pass compiles twice
                _pass_apart(kind, np.int64(w), s, net, data, work, update)
        total, penalty, finite, right = 0.0, 0.0, True, 0.0
        for w in range(work.parts):
            total, penalty = total + results[w, RESULT_LOSS], penalty + results[w, RESULT_PENALTY]
            finite, right = finite and results[w, RESULT_FINITE] != 0, right + results[w, RESULT_CORRECT]
        loss = total / n + 0.5 * alpha * penalty / n
        losses[s] = loss
        if s < correct.shape[0]:
            correct[s] = int(right)
        if not (finite and math.isfinite(loss) and loss <= limit):
            return s + 1, True, finite
    return data.starts.shape[0] - 1, True, True


_STEP = np.array([FIRST_LAYER, ROWS, BANDS], np.int64)
_FORWARD = np.array([LOGITS], np.int64)
_INT = numba.types.int64
try:
    from numba._dispatcher import compute_fingerprint  # the key of Numba's own dispatch
except ImportError:  # another Numba: every call types its arguments (slower, the same result)
    def compute_fingerprint(value):
        raise NotImplementedError


def _run(*args):
    """_mlp(*args), after compiling (or loading) it and every kernel it calls apart for these
    arguments' types and filling their slots (kernels.linking); where several must compile, on
    more than one core (kernels.parallel). The types are looked up by Numba's own dispatch key
    (compute_fingerprint: a few microseconds), not typed again each call (about 0.2 ms)."""
    if numba.config.DISABLE_JIT:
        return _mlp(*args)
    try:
        fingerprint = tuple(map(compute_fingerprint, args))
    except NotImplementedError:  # a value Numba's dispatch types the slow way
        fingerprint = None
    if fingerprint is None or fingerprint not in _LINKED:
        key = tuple(_mlp.typeof_pyval(a) for a in args)
        types = key[1:5]  # net, data, work, update

        def step(*kernels):
            return [(kernel, (_INT, _INT, *types)) for kernel in kernels]

        # each group compiled in one process (its kernels share leaves), with the seconds it takes
        # (bench.compile_profile; docs/performance.md#constants-and-where-they-come-from): how
        # kernels.parallel shares them out
        groups = [(2.2, step(_logits_tile_apart, _first_layer_piece_apart, _forward_rows_apart)), (1.1, [(_mlp, key)]),
                  (0.85, step(_weight_gradients_apart)), (0.75, step(_backward_rows_apart)),
                  (0.15, [(_pass_apart, (_INT, _INT, _INT, *types))])]
        parallel.compile_all(groups, sys.modules[__name__])
        if fingerprint is not None:
            _LINKED.add(fingerprint)
    return _mlp(*args)


_LINKED = set()
_LAYOUTS = {}  # (sizes, rows) -> _layout's table: a run asks for the same few again and again


def _scratch(work, sizes, parts, training, logits=None):
    """The Scratch of a step (training) or of logits into `logits`, from kernels.MLPWork `work`."""
    X, acts, deltas, y = work[:4]
    rows = X.shape[0] // sizes[0]
    key = (tuple(sizes), rows)
    at = _LAYOUTS.get(key)
    if at is None:
        at = _LAYOUTS.setdefault(key, _layout(sizes, rows))
    partials = _partials(work)
    if training:
        logits = acts[at[-1, OUT_AT] :]
    # a training step's first layer comes in pieces (step_pass runs a step's passes one call each)
    pieces = min(parts, 1 + partials.shape[0] // (rows * sizes[1])) if training else 0
    return Scratch(X, acts, deltas, y, partials, logits, at, np.empty((parts, 4)), parts, pieces)


def _check_network(images, index, scale, shift, sizes, activations, params, work):
    """The checks that keep the compiled kernels inside their buffers (they do no bounds checks),
    and the network description's (kernels.activation_names)."""
    X, acts, deltas, y = work[:4]
    sz = list(sizes.tolist() if isinstance(sizes, np.ndarray) else sizes)
    activation_names(sz, activations)
    count = parameter_count(sz)
    if params.shape != (count,) or not params.flags.c_contiguous:
        raise ValueError(f"params must be a contiguous ({count},) buffer for sizes {tuple(sz)}")
    if images.ndim != 2 or images.shape[1] != sz[0] or not images.flags.c_contiguous:
        raise ValueError(f"images must be C-contiguous (M, {sz[0]}), got {images.shape}")
    if scale.shape != (sz[0],) or shift.shape != (sz[0],):
        raise ValueError(f"scale and shift must be ({sz[0]},)")
    rows = X.shape[0] // sz[0]
    width = rows * sum(sz[1:])
    if len(index) > rows or acts.shape != (width,) or deltas.shape != (width,) or y.shape != (rows,):
        raise ValueError(f"work holds batches of {rows} rows, not {len(index)}")
    if not (X.dtype == acts.dtype == deltas.dtype == scale.dtype == shift.dtype == params.dtype
            == _partials(work).dtype):
        raise ValueError("work, scale and shift must have the dtype of params")
    if _partials(work).ndim != 1 or _partials(work).size % max(rows * sz[1], 1):
        raise ValueError(f"work's partials must be flat, in blocks of {rows}x{sz[1]}")


def _partials(work):
    """The workspace's buffer of first-layer pieces (kernels.MLPWork); empty in a bare 4-tuple."""
    return work[5] if len(work) > 5 else work[1][:0]


def _parts(work):
    """The parts a batch is cut into: the workspace's, else as many as Numba runs threads now."""
    parts = work[4] if len(work) > 4 else 0
    return parts if parts > 0 else numba.get_num_threads()


_CHECKED = [()]  # the arguments _steps last checked: a training loop passes the same ones every step


def _steps(images, order, starts, labels, scale, shift, sizes, activations, params, grads, work, update, alpha, limit,
           passes=_STEP, correct=None):
    """Checks, then _mlp's training steps on order and starts from _batches; returns (losses of the
    steps taken, parameters finite).

    The checks of everything but order and starts are skipped when every argument is the very object
    checked last time (arrays cannot change shape or dtype in place): they cost more than a step's Python.
    """
    same = (images, labels, scale, shift, sizes, activations, params, grads, update.m, update.v, *work[:4],
            _partials(work))
    if len(same) != len(_CHECKED[0]) or any(a is not b for a, b in zip(same, _CHECKED[0])):
        _check_network(images, order[:0], scale, shift, sizes, activations, params, work)  # batch sizes: below
        for name, a in (("grads", grads), *((n, a) for n, a in (("m", update.m), ("v", update.v)) if a.size)):
            if a.shape != params.shape or not a.flags.c_contiguous or a.dtype != params.dtype:
                raise ValueError(f"{name} must be a contiguous buffer like params, {params.shape} {params.dtype}")
        if len(labels) != len(images):
            raise ValueError("a training step needs one label per image")
        _CHECKED[0] = same
    sizes, activations = np.asarray(sizes, np.int64), np.asarray(activations, np.int64)
    if len(starts) > 2:  # many steps: refuse a bad row or label before any step is taken (the kernel checks each)
        rows = order[starts[0] : starts[-1]]
        if rows.min() < 0 or rows.max() >= len(images):
            raise ValueError("index points outside images")
        if not 0 <= labels[rows].min() <= labels[rows].max() < sizes[-1]:
            raise ValueError(f"a label is not below the {sizes[-1]} classes")
    losses = np.empty(len(starts) - 1)
    net, data = Network(sizes, activations, params, grads), Batches(images, labels, scale, shift, order, starts)
    work = _scratch(work, sizes, _parts(work), True)
    if correct is None:
        correct = _NO_COUNTS
    elif correct.dtype != np.int64 or correct.ndim != 1 or len(correct) < len(losses) or not correct.flags.writeable:
        raise ValueError(f"correct must be a writable int64 array of at least {len(losses)} counts")
    done, valid, finite = _run(passes, net, data, work, update, float(alpha), float(limit), losses, correct)
    if not valid:
        index = order[starts[done] : starts[done + 1]]
        if index.min() < 0 or index.max() >= len(images):
            raise ValueError("index points outside images")
        raise ValueError(f"a label is not below the {sizes[-1]} classes")
    return losses[:done], bool(finite)


def _batches(order, starts, rows):
    """order as intp, starts as int64 and the rows of each step (a list), after checking that every
    step has 1 to `rows` rows inside order. Python lists: a chunk has a few dozen steps at most."""
    order, starts = np.ascontiguousarray(order, np.intp), np.ascontiguousarray(starts, np.int64)
    bounds = starts.tolist() if starts.ndim == 1 else []
    counts = [b - a for a, b in itertools.pairwise(bounds)]
    if not counts or bounds[0] < 0 or bounds[-1] > len(order):
        raise ValueError(f"starts must be 2 or more offsets into the {len(order)} rows of order")
    if min(counts) < 1 or max(counts) > rows:
        bad = next(c for c in counts if not 1 <= c <= rows)
        raise ValueError(f"a training step takes 1 to {rows} rows here, not {bad}")
    return order, starts, counts


def _step_constants(dtype, step, lrs, beta1, beta2, counts, alpha):
    """(K, 5) of dtype: the STEP_* columns (lr, m_scale, v_scale, 1/n, alpha/n) of K steps, the first
    numbered `step` (from 1), n rows each (counts). Computed in float64 as _adam_constants does, then rounded."""
    return np.array([(lr, 1 / (1 - beta1**s), 1 / (1 - beta2**s), 1.0 / n, alpha / n)
                     for s, lr, n in zip(range(step, step + len(counts)), lrs, counts)], dtype)


def _update_of(optimizer, state, hyper, step, lrs, counts, dtype, alpha):
    """The Update of `optimizer` (a name of kernels.OPTIMIZERS, or None: gradients only) for steps
    numbered step, step + 1, ... with learning rates lrs, after checking state and hyper."""
    if optimizer is not None and optimizer not in OPTIMIZERS:
        raise ValueError(f"unknown optimizer {optimizer!r}; choose one of {', '.join(OPTIMIZERS)}")
    names = OPTIMIZER_STATE.get(optimizer, ())
    if len(state) != len(names) or len(hyper) != len(OPTIMIZER_HYPER.get(optimizer, ())):
        raise ValueError(f"{optimizer or 'no update'} takes state {names} and hyper-parameters "
                         f"{OPTIMIZER_HYPER.get(optimizer, ())}, got {len(state)} and {len(hyper)}")
    if len(lrs) != len(counts):
        raise ValueError(f"{len(counts)} steps need as many learning rates, got {len(lrs)}")
    beta1, beta2, eps = hyper if optimizer == "adam" else (0.0, 0.0, 1.0)
    empty = np.zeros(0, dtype)
    m, v = state if optimizer == "adam" else (empty, empty)
    code = NO_UPDATE if optimizer is None else OPTIMIZERS.index(optimizer)
    shared = _adam_constants(dtype, 1, 0.0, beta1, beta2, eps)  # lr, m_scale, v_scale: each step's own, in steps
    return Update(code, m, v, _step_constants(dtype, step, lrs, beta1, beta2, counts, alpha), shared.beta1,
                  shared.beta2, shared.one_minus_beta1, shared.one_minus_beta2, shared.eps, shared.zero, shared.tiny)


def mlp_gradients(images, index, labels, scale, shift, sizes, activations, params, grads, work, alpha=0.0):
    """Loss of the batch images[index] with its L2 penalty, and its gradient into grads (P,), in one
    compiled call: _mlp's step without an update. images (M, D0) are pixels of any dtype, labels
    (M,) their classes, work is kernels.mlp_workspace(sizes, rows, dtype)."""
    index, starts, counts = _batches(index, [0, len(index)], len(work[3]))
    update = _update_of(None, (), (), 1, [0.0], counts, params.dtype, alpha)
    losses, _ = _steps(images, index, starts, labels, scale, shift, sizes, activations, params, grads, work, update,
                       alpha, math.inf)
    return float(losses[0])


def mlp_train_steps(images, order, starts, labels, scale, shift, sizes, activations, params, grads, optimizer, state,
                    hyper, step, lrs, work, alpha=0.0, limit=math.inf, correct=None):
    """Training steps on the batches images[order[starts[k]:starts[k + 1]]], k = 0, 1, ..., in one
    compiled call (_mlp): step k is the optimiser's step number step + k, with learning rate lrs[k].
    Each thread updates its band of the parameters as soon as the band's gradients (with their L2
    term) are computed, while they are in its cache. Stops after a step whose loss is not finite or
    above limit, or that leaves a parameter not finite. Returns (the steps' losses, float64, one
    per step taken; p finite). correct (int64, a count per step), when given, gets each step's rows
    whose logits were largest at their label before its update (kernels.reference)."""
    order, starts, counts = _batches(order, starts, len(work[3]))
    update = _update_of(optimizer, state, hyper, step, lrs, counts, params.dtype, alpha)
    return _steps(images, order, starts, labels, scale, shift, sizes, activations, params, grads, work, update,
                  alpha, limit, correct=correct)


def mlp_adam_step(images, index, labels, scale, shift, sizes, activations, params, grads, m, v, step, lr, beta1,
                  beta2, eps, work, alpha=0.0):
    """One Adam step of mlp_train_steps on the batch images[index]. Returns (loss, p finite)."""
    losses, finite = mlp_train_steps(images, index, [0, len(index)], labels, scale, shift, sizes, activations, params,
                                     grads, "adam", (m, v), (beta1, beta2, eps), step, [lr], work, alpha)
    return float(losses[0]), finite


STEP_PASSES = {"first layer": FIRST_LAYER, "rows": ROWS, "bands": BANDS}


def step_pass(name, images, index, labels, scale, shift, sizes, activations, params, grads, optimizer, state, hyper,
              step, lr, work, alpha=0.0):
    """One pass of a training step (STEP_PASSES: "first layer", "rows", "bands"), as one compiled call:
    the three in that order do exactly what mlp_train_steps' step does, bit for bit. For profiling
    (bench.profile_step times each apart); optimizer None leaves out the update of the bands pass.
    Returns the step's loss so far (its rows' part, after "rows")."""
    index, starts, counts = _batches(index, [0, len(index)], len(work[3]))
    update = _update_of(optimizer, state, hyper, step, [lr], counts, params.dtype, alpha)
    passes = np.array([STEP_PASSES[name]], np.int64)
    losses, _ = _steps(images, index, starts, labels, scale, shift, sizes, activations, params, grads, work, update,
                       alpha, math.inf, passes)
    return float(losses[0])


def mlp_logits(images, index, scale, shift, sizes, activations, params, out, work):
    """Logits (N, K) of images[index] into out, the rows cut into tiles of TILE_ROWS that run on
    Numba's threads. A row's logits are the same bits wherever it stands in index and however many
    threads run (_tile_product)."""
    _check_network(images, index, scale, shift, sizes, activations, params, work)
    index, sizes = np.ascontiguousarray(index, np.intp), np.asarray(sizes, np.int64)
    if out.shape != (len(index), sizes[-1]) or not out.flags.c_contiguous or out.dtype != params.dtype:
        raise ValueError(f"out must be C-contiguous ({len(index)}, {sizes[-1]}) of the params' dtype")
    if len(index) and (index.min() < 0 or index.max() >= len(images)):
        raise ValueError("index points outside images")
    # what a step takes and logits do not read, of the types a step passes: both share one compiled kernel
    net = Network(sizes, np.asarray(activations, np.int64), params, params[:0])
    data = Batches(images, _NO_LABELS, scale, shift, index, np.array([0, len(index)], np.int64))
    work = _scratch(work, sizes, -(-len(index) // TILE_ROWS), False, out.reshape(-1))
    update = _update_of(None, (), (), 1, [0.0], [max(len(index), 1)], params.dtype, 0.0)
    _run(_FORWARD, net, data, work, update, 0.0, 0.0, np.empty(1), _NO_COUNTS)
    return out


_NO_LABELS = np.zeros(0, np.uint8)  # of the type of IDX labels, which training steps pass
_NO_COUNTS = np.zeros(0, np.int64)  # no room for correct counts (mlp_train_steps' correct not asked for)


# Adam's constants for one step (adam_update's maths, with m̂ = m·m_scale and v̂ = v·v_scale), each
# in the parameters' dtype: a float64 or Python float reaching _adam would promote float32 maths.
# zero is 0 in that dtype, for the finiteness check.
# tiny is the dtype's smallest normal number: moments below it are flushed to 0 (see adam_update in
# kernels.reference), so decaying moments never linger in the ~100x slower subnormal range.
AdamConstants = namedtuple("AdamConstants",
                           "lr beta1 beta2 one_minus_beta1 one_minus_beta2 m_scale v_scale eps zero tiny")


def _adam_constants(dtype, step, lr, beta1, beta2, eps):
    """AdamConstants of step `step` (from 1), computed in float64, then each rounded to dtype."""
    t = np.dtype(dtype).type
    m_scale, v_scale = 1 / (1 - beta1**step), 1 / (1 - beta2**step)
    return AdamConstants(t(lr), t(beta1), t(beta2), t(1 - beta1), t(1 - beta2), t(m_scale), t(v_scale), t(eps), t(0),
                         np.finfo(dtype).tiny)


@_internal_fast  # reassociation lets the poison sum vectorise (8x here); no nnan/ninf keeps NaN alive
def _adam(p, g, m, v, c):
    poison = c.zero  # stays 0 unless some p is inf or NaN (inf * 0 = NaN)
    for i in range(p.shape[0]):
        gi = g[i]
        mi = c.beta1 * m[i] + c.one_minus_beta1 * gi
        vi = c.beta2 * v[i] + c.one_minus_beta2 * gi * gi
        mi = c.zero if abs(mi) < c.tiny else mi  # selects, not branches: the loop still vectorises;
        vi = c.zero if vi < c.tiny else vi  # written so that NaN (no comparison holds) passes through
        m[i] = mi
        v[i] = vi
        pi = p[i] - c.lr * (mi * c.m_scale) / (math.sqrt(vi * c.v_scale) + c.eps)
        p[i] = pi
        poison += pi * c.zero
    return poison == c.zero


@_jit_parallel
def _adam_chunks(chunks, p, g, m, v, c):
    finite = np.zeros(chunks, np.bool_)
    for part in prange(chunks):  # one contiguous chunk per thread, much as mlp_gradients' bands
        lo, hi = _chunk(p.shape[0], part, chunks)
        finite[part] = _adam(p[lo:hi], g[lo:hi], m[lo:hi], v[lo:hi], c)
    return finite.all()


def adam_update(p, g, m, v, step, lr, beta1, beta2, eps):
    """One Adam step over the whole flat network, chunks on Numba's threads; True when p stays finite."""
    constants = _adam_constants(p.dtype, step, lr, beta1, beta2, eps)
    return bool(_adam_chunks(numba.get_num_threads(), p, g, m, v, constants))


@_internal_fast
def _sgd(p, g, lr, zero):
    poison = zero
    for i in range(p.shape[0]):
        pi = p[i] - lr * g[i]
        p[i] = pi
        poison += pi * zero
    return poison == zero


@_jit_parallel
def _sgd_chunks(chunks, p, g, lr, zero):
    finite = np.zeros(chunks, np.bool_)
    for c in prange(chunks):
        lo, hi = _chunk(p.shape[0], c, chunks)
        finite[c] = _sgd(p[lo:hi], g[lo:hi], lr, zero)
    return finite.all()


def sgd_update(p, g, lr):
    """p = p - lr·g in one pass, chunks on Numba's threads; True when p stays finite."""
    t = p.dtype.type
    return bool(_sgd_chunks(numba.get_num_threads(), p, g, t(lr), t(0)))


@_jit_fast
def _all_finite(x, zero):
    poison = zero
    for i in range(x.shape[0]):
        poison += x[i] * zero
    return poison == zero


def all_finite(x):
    """True when no element of x is NaN or infinite."""
    return bool(_all_finite(x.ravel(), x.dtype.type(0)))


# ----------------------------------------------------------------------------- compile time
# Announced before a compile (fastnet.run.warm_up): what the last compile of a training run's
# kernels took on this machine, remembered beside Numba's cache; before any, an estimate from how
# long this machine takes to compile _probe_kernel, a small fixed kernel: COMPILE_PER_PROBE times
# that for the whole compile in one process, and PARALLEL_SHARE of it where compile workers share
# it (kernels.parallel). Both ratios: docs/performance.md#constants-and-where-they-come-from.
COMPILE_PER_PROBE = 65
PARALLEL_SHARE = 0.65
_RECORD = "fastnet-compile-seconds.json"


def _probe_kernel(x, y):
    """A small loop over arrays: what _probe compiles."""
    total = 0.0
    for i in range(x.shape[0]):
        y[i] = max(x[i], 0.0) * 2.0
        total += y[i]
    return total


def _probe():
    """Seconds this machine takes to compile _probe_kernel with Numba, after Numba's one-time
    setup (made by compiling an empty function: the kernels' compile needs it anyway)."""
    njit(lambda: None).compile(())
    array = numba.types.float64[::1]
    t0 = time.perf_counter()
    njit(error_model="numpy")(_probe_kernel).compile((array, array))
    return time.perf_counter() - t0


def _record_path():
    """Where the last compile time is remembered: Numba's cache folder of _mlp; None without one."""
    try:
        return os.path.join(_mlp._cache._cache_path, _RECORD)
    except AttributeError:  # NUMBA_DISABLE_JIT, no cache, or a Numba without these internals
        return None


def compile_seconds():
    """About how long the first training step will compile here: 0 when Numba's on-disk cache
    already holds the compiled step (its index is present and current for this source file), or
    the kernels shipped prebuilt fit this machine (kernels.linking.KernelCache)."""
    try:
        if _mlp._cache.holds_any(_mlp.targetctx.codegen()):  # this machine's cache, or kernels shipped prebuilt
            return 0
    except Exception:  # NUMBA_DISABLE_JIT (a plain function) or no cache locator: nothing to announce
        return 0
    try:
        with open(_record_path()) as f:
            return float(json.load(f)["seconds"])
    except (OSError, TypeError, ValueError, KeyError):
        return COMPILE_PER_PROBE * _probe() * (PARALLEL_SHARE if parallel.cores() > 1 else 1)


def remember_compile_seconds(seconds):
    """Keep what a compile took beside the cache, for the next announcement; quietly skipped where
    the cache folder is not writable."""
    path = _record_path()
    if path is None:
        return
    try:
        tmp = f"{path}.{os.getpid()}.tmp"
        with open(tmp, "w") as f:
            json.dump({"seconds": round(float(seconds), 1), "numba": numba.__version__}, f)
        os.replace(tmp, path)
    except OSError:
        pass
