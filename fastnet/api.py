"""fastnet for people holding arrays: fit a classifier, predict, score, save and load model files.

`fit` trains with the recipe of python -m fastnet.train (fastnet.recipe: the same presets,
standardisation, split and training loop), so the same settings on the same data give the same
network. `Model.save` writes, and `load` reads, the command line's model files.
"""

import contextlib
import dataclasses
import os

import numpy as np

from . import checkpoint, recipe, run
from .backend import BACKEND_NAMES, get_backend
from .data.arrays import as_rows, small_labels
from .errors import DivergenceError, InputError
from .model import MLP, predict_logits
from .optim import OPTIMIZERS
from .recipe import Recipe, new_optimizer
from .threads import default_threads, limited
from .training import TrainState

# Model.history's names, and the training loop's names for the same lists.
HISTORY = {"loss": "train_loss", "accuracy": "train_accuracy", "val_loss": "val_loss",
           "val_accuracy": "val_accuracy", "epoch_seconds": "epoch_seconds"}


@contextlib.contextmanager
def python_errors():
    """fastnet's errors, as a Python caller expects them: InputError (bad input) and DivergenceError
    (a diverged run) become ValueError."""
    try:
        yield
    except (InputError, DivergenceError) as exc:
        raise ValueError(str(exc)) from None


def fit(X, y, *, hidden_layer_sizes=(128,), activation="relu", alpha=0.0, epochs=5, batch_size=128, lr=2e-3,
        schedule="cosine", warmup=0, optimizer="adam", beta1=0.8, beta2=0.99, eps=1e-8, standardize=True,
        validation=0.05, seed=0, dtype="float32", backend="numba", threads=None, verbose=False, train_pass=False):
    """Train a multilayer perceptron classifier (hidden layers, softmax output, cross-entropy).

    The defaults are python -m fastnet.train's recipe: 5 epochs of Adam (beta1 0.8, beta2 0.99) at
    2e-3 decayed by a cosine to near zero, batches of 128, inputs standardised, 5% held out.

    Parameters
    ----------
    X : array_like of shape (n_samples, n_features)
        Real numbers: uint8, float32 and float64 rows are read as they are, without a copy when
        C-contiguous (a memory-mapped ``.npy`` too); other dtypes are converted once to float64
        (float16 to float32), F-ordered rows are copied to C order.
    y : array_like of shape (n_samples,)
        Labels of any hashable type (integers, strings); ``classes_ = np.unique(y)``.
    hidden_layer_sizes : tuple of int, default=(128,)
        Units of each hidden layer; ``()`` gives a softmax regression.
    activation : {"relu", "tanh", "logistic", "identity"}, default="relu"
        The hidden layers' activation.
    alpha : float, default=0.0
        L2 penalty on the weights (not the biases), as scikit-learn's: the loss gains
        ½·alpha·Σ‖W‖²/N for a batch of N rows.
    epochs : int, default=5
        Passes over the training rows.
    batch_size : int, default=128
        Samples per step; the last partial batch of an epoch is kept.
    lr : float, default=2e-3
        Base learning rate.
    schedule : {"cosine", "constant"}, default="cosine"
        "cosine" decays the rate to near zero at the last step; "constant" keeps it.
    warmup : int, default=0
        Steps of linear learning-rate warm-up.
    optimizer : {"adam", "gd"}, default="adam"
        Adam, or plain gradient descent.
    beta1, beta2, eps : float, default=0.8, 0.99, 1e-8
        Adam's moment decays, in [0, 1), and its epsilon.
    standardize : bool, default=True
        Per feature, subtract the training rows' mean and divide by their deviation; the statistics
        are stored with the model and applied by predict. uint8 input is taken for pixels and
        standardised exactly as the command line does: moments of p/255, the deviation floored at
        ``fastnet.recipe.SD_FLOOR`` (0.05) so that a nearly constant border pixel is not blown up.
        Other input: moments in float64 (in power-of-two units for features beyond 2**64 or below
        2**-64, so that 1e300 does not overflow); a feature whose variance is within rounding error
        of zero (a constant one) is only centred (scikit-learn StandardScaler's rule). False: the
        values are used as they are (no hidden 1/255). Either way a feature whose scaled values do
        not fit `dtype` is a ValueError naming it.
    validation : float, int, (X_val, y_val) or None, default=0.05
        Rows held out to measure val_loss and val_accuracy after each epoch: a fraction of the
        rows, a count of rows (drawn with `seed`), a pair of arrays, or None / 0 for none.
    seed : int, default=0
        Seed of the initialisation, the validation split and the batch order.
    dtype : {"float32", "float64"}, default="float32"
        Precision of the parameters and the arithmetic.
    backend : {"numba", "numpy"}, default="numba"
        The compiled kernels, or the NumPy reference.
    threads : int or None, default=None
        Threads of the kernels (numba) or of BLAS (numpy); None: ``fastnet.threads.default_threads()``,
        the cores this process may use, or its share of them inside a joblib or Dask worker.
    verbose : bool, default=False
        Print one line per epoch.
    train_pass : bool, default=False
        Measure each epoch's training accuracy with a pass over the training rows after it; by
        default the history holds the running accuracy of the epoch's steps (as Keras reports it),
        which costs nothing.

    Returns
    -------
    model : fastnet.Model
        The trained network, with ``classes_`` and ``history``.

    Raises
    ------
    TypeError
        X is not an array of real numbers, or y's labels cannot be compared.
    ValueError
        Bad shapes, NaN or infinite values, features too large (or small) for `dtype`, fewer than
        two classes, a setting out of range, or a diverged run.
    MemoryError
        Training would need more memory than this process may allocate (the machine's free
        memory, ``ulimit -v``, a container's limit): raised before anything large is allocated.

    Examples
    --------
    >>> import numpy as np
    >>> import fastnet
    >>> rng = np.random.default_rng(0)
    >>> X = rng.normal(size=(300, 4)).astype(np.float32)
    >>> y = np.where(X[:, 0] + X[:, 1] > 0, "yes", "no")
    >>> model = fastnet.fit(X, y, hidden_layer_sizes=(16,), epochs=20, batch_size=32, lr=1e-2, validation=None)
    >>> model.classes_
    array(['no', 'yes'], dtype='<U3')
    >>> bool(model.score(X, y) > 0.9)
    True
    >>> len(model.history["loss"])
    20
    """
    hidden = _hidden_sizes(hidden_layer_sizes)
    val_split, pair = _validation(validation)
    if not isinstance(verbose, (bool, np.bool_)):
        raise TypeError(f"verbose must be True or False, got {verbose!r}")
    with python_errors():
        X = as_rows(X)
        classes, labels = encode_labels(y, len(X))
        r = recipe.make(argument, layers=(X.shape[1], *hidden, len(classes)), activation=activation,
                        alpha=alpha, epochs=epochs, batch_size=batch_size, optimizer=optimizer, lr=lr,
                        schedule=schedule, warmup=warmup, beta1=beta1, beta2=beta2, eps=eps, standardize=standardize,
                        val_split=val_split, seed=seed, dtype=dtype)
        threads = recipe.check_threads(threads)
        _check_backend(backend)
        if pair is not None:
            X_val = as_rows(pair[0], "X_val")
            if X_val.shape[1] != X.shape[1]:
                raise ValueError(f"X_val has {X_val.shape[1]} features but X has {X.shape[1]}")
            val = (X_val, encode_known(pair[1], classes, len(X_val), "y_val"))
            train = (X, labels)
        elif isinstance(val_split, int) and val_split >= len(X):
            raise ValueError(f"validation={val_split} leaves no training rows (X has {len(X)})")
        if pair is None:  # recipe.split gathers the rows (when it holds some out)
            check_memory(r, X, X.nbytes if recipe.held_out(len(X), r.val_split) else 0, threads, backend)
            train, val = recipe.split(X, labels, r.val_split, r.seed)
        else:
            check_memory(r, X, 0, threads, backend, len(val[0]))
        state = recipe.new_state(r, train[0], "standardize" if r.standardize else "none")
        model = Model(state, r, classes, trained={"input_dtype": X.dtype.name}, backend=backend, threads=threads)
        model._fit(train, val, r.epochs, verbose=verbose, train_pass=train_pass)
    return model


def argument(field):
    """How fastnet.fit names a recipe field in its messages: its keyword."""
    return {"val_split": "validation", "layers": "hidden_layer_sizes"}.get(field, field)


def load(path):
    """Read a model file written by ``Model.save`` or ``python -m fastnet.train --save``.

    Parameters
    ----------
    path : str, bytes or os.PathLike
        An ``.npz`` model file. It is fully validated and never unpickled.

    Returns
    -------
    model : fastnet.Model
        Its ``classes_`` are the labels it was trained on (0..K-1 for a command-line model).

    Raises
    ------
    FileNotFoundError
        There is no file at path.
    TypeError
        path is not a path.
    ValueError
        The file is not a valid fastnet model file.

    Examples
    --------
    >>> import os, tempfile
    >>> import numpy as np
    >>> import fastnet
    >>> X = np.random.default_rng(0).normal(size=(100, 3))
    >>> model = fastnet.fit(X, X[:, 0] > 0, epochs=2, validation=None)
    >>> path = os.path.join(tempfile.mkdtemp(), "model.npz")
    >>> model.save(path)
    >>> loaded = fastnet.load(path)
    >>> bool((loaded.predict(X) == model.predict(X)).all())
    True
    """
    path = _path(path)
    if not os.path.exists(path):
        raise FileNotFoundError(f"model file {path} does not exist")
    with python_errors():
        network, record, names, arrays = checkpoint.load(path)
        classes = checkpoint.classes(arrays, path, network.num_classes)
        if classes is None:
            classes = np.arange(network.num_classes)
        try:
            r = Recipe.from_stored(record["recipe"])
        except (ValueError, TypeError) as exc:
            raise ValueError(f"{path}: its recipe is damaged ({exc})") from None
        if r.layers != network.sizes:
            raise ValueError(f"{path}: its recipe's layers {r.layers} are not its network's {network.sizes}")
        if "progress" in arrays and any(k.startswith("opt_") for k in arrays):
            state = checkpoint.state_from(network, record["recipe"], arrays, path, OPTIMIZERS)
        else:  # only the network: enough to predict
            state = TrainState(network, None, np.random.default_rng(0))
    trained = record["trained"]
    backend = trained.get("backend") if trained.get("backend") in BACKEND_NAMES else "numba"
    return Model(state, r, classes, names, trained, backend=backend)


class _EpochEnd:
    """A training state's network, optimiser, generator and history as at the end of an epoch (or
    the start): what a training cut short by Ctrl-C is put back to (Model.train)."""

    def __init__(self, state):
        self.params = state.model.params.copy()
        self.optimizer = {k: np.array(v, copy=True) for k, v in state.optimizer.state().items()}
        self.rng, self.epoch = state.rng.bit_generator.state, state.epoch
        h = state.history  # a copy whose lists are its own (the step losses are thinned, not only appended to)
        self.history = type(h)(**{k: list(v) if isinstance(v, list) else v for k, v in vars(h).items()})

    def restore(self, state):
        state.model.params[...] = self.params
        state.optimizer.load_state(self.optimizer)
        state.rng.bit_generator.state = self.rng
        state.epoch, state.batch, state.partial_losses, state.partial_correct = self.epoch, 0, [], []
        state.history = self.history


class Model:
    """A trained network: predict, score, save. Made by ``fastnet.fit`` or ``fastnet.load``.

    Attributes
    ----------
    classes_ : ndarray of shape (n_classes,)
        The labels; output k of the network stands for classes_[k].
    history : dict of lists
        One entry per epoch: loss and accuracy on the training rows, val_loss and val_accuracy
        (NaN without validation rows), epoch_seconds (training only; evaluation is timed apart).
    n_features_in_ : int
        Features per sample.
    backend : {"numba", "numpy"}
        The kernels predict uses; may be changed.
    threads : int or None
        Threads predict and train use (None: ``fastnet.threads.default_threads()``); may be changed.
    recipe : fastnet.recipe.Recipe
        How it was trained (its ``epochs``: the epochs trained so far), as the model file stores it.
    """

    def __init__(self, state, recipe, classes, names=None, trained=None, backend="numba", threads=None):
        self._state = state
        self.recipe = recipe
        self.classes_ = classes
        self._names = names
        self._trained = dict(trained or {})  # what it was trained on (fastnet.checkpoint.TRAINED)
        self.backend = backend
        self.threads = threads

    @property
    def network(self):
        """The fastnet.model.MLP: parameters (flat, with per-layer views W and b) and input scaling."""
        return self._state.model

    @property
    def n_features_in_(self):
        return self.network.sizes[0]

    @property
    def history(self):
        h = self._state.history
        return {name: list(getattr(h, field)) for name, field in HISTORY.items()}

    def __repr__(self):
        sizes = ",".join(map(str, self.network.sizes))
        return (f"fastnet.Model(layers {sizes}, {len(self.classes_)} classes, {self._state.epoch} epochs, "
                f"{self.network.dtype})")

    def predict_proba(self, X):
        """Class probabilities: the softmax of the network's outputs. A finite row far beyond the
        training rows (1e308, say) is predicted with its inputs saturated, never as NaN.

        Parameters
        ----------
        X : array_like of shape (n_samples, n_features)
            As for ``fastnet.fit``; scaled by the model's stored standardisation on the way in.

        Returns
        -------
        proba : ndarray of shape (n_samples, n_classes), float64
            Column k is the probability of ``classes_[k]``; rows sum to 1.

        Examples
        --------
        >>> import numpy as np
        >>> import fastnet
        >>> X = np.random.default_rng(0).normal(size=(200, 2))
        >>> model = fastnet.fit(X, X[:, 0] > 0, epochs=3, validation=None)
        >>> model.predict_proba(X[:3]).shape
        (3, 2)
        """
        return self._proba(self._rows(X))

    def predict(self, X):
        """The most probable class of each row of X, as one of ``classes_``.

        Examples
        --------
        >>> import numpy as np
        >>> import fastnet
        >>> X = np.random.default_rng(0).normal(size=(200, 2))
        >>> model = fastnet.fit(X, np.where(X[:, 0] > 0, "right", "left"), epochs=5, batch_size=16, validation=None)
        >>> model.predict(np.array([[3.0, 0.0], [-3.0, 0.0]])).tolist()
        ['right', 'left']
        """
        return self.classes_[self._logits(self._rows(X)).argmax(axis=1)]

    def score(self, X, y):
        """Accuracy: the fraction of rows of X whose predicted class equals y. Labels of another kind
        than ``classes_`` (text against numbers) are a ValueError, as in scikit-learn.

        Examples
        --------
        >>> import numpy as np
        >>> import fastnet
        >>> X = np.random.default_rng(0).normal(size=(200, 2))
        >>> model = fastnet.fit(X, X[:, 0] > 0, epochs=5, batch_size=16, validation=None)
        >>> bool(model.score(X, X[:, 0] > 0) > 0.9)
        True
        """
        predicted = self.predict(X)
        y = np.asarray(y)
        if y.shape != predicted.shape:
            raise ValueError(f"y must hold one label per row of X ({predicted.shape}), got shape {y.shape}")
        kinds = {_label_kind(y), _label_kind(self.classes_)}
        if len(y) and len(kinds) > 1:  # scikit-learn's rule: never compare numbers with strings
            raise ValueError(f"y holds {_label_kind(y)} labels but the model's classes are "
                             f"{_label_kind(self.classes_)}: {self.classes_[:5]!r}")
        return float(np.mean(predicted == y))

    def save(self, path):
        """Write the model to path: the command line's ``.npz`` model file, no pickles.

        ``python -m fastnet.evaluate`` reads it (given ``--data-dir`` or ``--dataset``: the file records
        the dtype of the rows it was fit on, not where they came from, and evaluate refuses 0-255
        pixels for a model of float features); labels other than 0..K-1 are kept in its optional
        ``classes`` member, so ``fastnet.load`` gives them back and evaluate and ``--resume`` match
        the data's labels to them (numbers by value, text by the data set's class names).
        Integer labels must fit 64 bits; path is a str, bytes or os.PathLike.

        Examples
        --------
        >>> import os, tempfile
        >>> import fastnet, numpy as np
        >>> features = np.random.default_rng(1).normal(size=(100, 3))
        >>> model = fastnet.fit(features, np.where(features[:, 0] > 0, "a", "b"), epochs=1, validation=None)
        >>> model.save(os.path.join(tempfile.mkdtemp(), "model.npz"))
        """
        classes = _storable(self.classes_)
        names = self._names or [str(c) for c in classes]
        state = self._state
        if state.optimizer is None:  # a file that held only the network: save it with a fresh optimiser
            state = dataclasses.replace(state, optimizer=new_optimizer(self.recipe, self.network))
        path = _path(path)
        with python_errors():
            checkpoint.save(path, state, self.recipe, {**self._trained, "backend": self.backend}, names, classes)

    def to_onnx(self, path=None, *, input="float", opset=None):
        """The model as an ONNX graph (an onnx.ModelProto), written atomically to path when given.

        Input ``X`` (N, n_features): float32 features as predict takes them, or with
        ``input="uint8"`` uint8 pixels; the stored standardisation is in the graph. Outputs
        ``output_label`` (N,), int64 or string as ``classes_``, and ``output_probability`` (N, K)
        float32 (skl2onnx's names for a classifier's outputs). float32 arithmetic, also for a
        float64 model. opset: default ``fastnet.export.DEFAULT_OPSET``. Needs the ``[onnx]`` extra
        (an ImportError names it); fastnet.export has the details.
        """
        from . import export

        try:
            return export.to_onnx(self.network, self.classes_, self.recipe.as_stored(),
                                  None if path is None else os.fspath(path), input=input, opset=opset)
        except export.MissingPackage as exc:
            raise ImportError(str(exc)) from None
        except InputError as exc:
            raise ValueError(str(exc)) from None

    # ------------------------------------------------------------ internals shared with fastnet.sklearn

    def _rows(self, X):
        with python_errors():
            X = as_rows(X)
        if X.shape[1] != self.n_features_in_:
            raise ValueError(f"X has {X.shape[1]} features, but the model takes {self.n_features_in_}")
        return X

    def _kernels(self):
        """The kernel module of self.backend; ValueError when it is not one of BACKEND_NAMES."""
        if not isinstance(self.backend, str) or self.backend not in BACKEND_NAMES:
            raise ValueError(f"backend must be one of {', '.join(BACKEND_NAMES)}, got {self.backend!r}")
        with python_errors():
            return get_backend(self.backend)

    def _logits(self, X):
        """The network's outputs (n_samples, n_classes) for checked rows X, in the model's dtype.
        A row whose outputs overflow (finite inputs far beyond any training row, such as 1e308) is
        computed again with its inputs saturated at INPUT_LIMIT (saturated)."""
        K = self._kernels()
        with limited(self.threads, K.BLAS_THREADS, self.backend), np.errstate(all="ignore"):
            Z = predict_logits(self.network, K, X)
            overflowed = ~np.isfinite(Z).all(axis=1)
            if overflowed.any():
                Z[overflowed] = predict_logits(self.network, K, saturated(self.network, X[overflowed]))
            return Z

    def _proba(self, X):
        Z = self._logits(X).astype(np.float64)
        Z -= Z.max(axis=1, keepdims=True)  # stable: exp of values <= 0 cannot overflow
        P = np.exp(Z)
        P /= P.sum(axis=1, keepdims=True)
        return P

    def _log_proba(self, X):
        Z = self._logits(X).astype(np.float64)
        Z -= Z.max(axis=1, keepdims=True)
        return Z - np.log(np.exp(Z).sum(axis=1, keepdims=True))  # log-softmax: finite where softmax underflows

    def train(self, X, y, *, epochs=1, validation=None, shuffle=True, on_epoch=None, verbose=False, recipe=None,
              fresh_optimizer=False):
        """Train `epochs` more epochs on X and y (labels among ``classes_``), continuing the network,
        the optimiser's state and the batch order of the training so far.

        Parameters
        ----------
        X : array_like of shape (n_samples, n_features)
        y : array_like of shape (n_samples,)
        epochs : int, default=1
            Epochs to add; the learning-rate schedule spans all epochs trained, these included.
        validation : (X_val, y_val) or None, default=None
            Rows measured after each epoch (history's val_loss and val_accuracy).
        shuffle : bool, default=True
            Draw a new order of the rows each epoch; False takes them in order.
        on_epoch : callable or None, default=None
            Called with the model after each epoch; when it returns True, training stops there.
        verbose : bool, default=False
            Print one line per epoch.
        recipe : fastnet.recipe.Recipe or None, default=None
            A new recipe for the steps from now on (batch size, learning rate and schedule, the
            optimiser and its hyper-parameters); the network's layers, activation, dtype and
            standardisation stay as they are. None: the model's own.
        fresh_optimizer : bool, default=False
            Start the optimiser afresh (its moments and step count), as a warm-started fit does.

        Ctrl-C (KeyboardInterrupt) leaves the model as after its last complete epoch and is raised
        again. Returns the model.
        """
        if recipe is not None:
            kept = {k: getattr(self.recipe, k) for k in ("layers", "activation", "dtype", "standardize")}
            self.recipe = recipe.replace(**kept)
        if fresh_optimizer or self._state.optimizer is None:
            self._state.optimizer = new_optimizer(self.recipe, self.network)
        with python_errors():
            X = self._rows(X)
            train = (X, encode_known(y, self.classes_, len(X)))
            val = (X[:0], train[1][:0])
            if validation is not None:
                X_val = self._rows(validation[0])
                val = (X_val, encode_known(validation[1], self.classes_, len(X_val), "y_val"))
            self._fit(train, val, self._state.epoch + epochs, on_epoch, verbose, shuffle=shuffle)
        return self

    def _fit(self, train, val, epochs, on_epoch=None, verbose=False, train_pass=False, shuffle=True):
        """Train up to `epochs` epochs in total on (rows, class indices) pairs train and val, the
        model as after its last complete epoch when a KeyboardInterrupt cuts it short."""
        state, K = self._state, self._kernels()
        end = _EpochEnd(state)

        def each_epoch(st):
            if verbose:
                print(run.epoch_line(st, epochs, len(train[1])), flush=True)
            stop = on_epoch is not None and on_epoch(self)
            nonlocal end
            end = _EpochEnd(state)
            return stop

        try:
            with limited(self.threads, K.BLAS_THREADS, self.backend) as threads:
                self._trained["threads"] = threads
                run.warm_up(K, state, train, [val])
                run.train(state, K, train, val, self.recipe.replace(epochs=epochs), each_epoch, train_pass=train_pass,
                          shuffle=shuffle)
        except KeyboardInterrupt:
            end.restore(state)
            raise
        finally:
            self.recipe = self.recipe.replace(epochs=max(state.epoch, 1))

    def predict_log_proba(self, X):
        """The logarithm of predict_proba, finite where a probability underflows to 0."""
        return self._log_proba(self._rows(X))

    def __getstate__(self):
        """Pickle the network as plain arrays (its per-layer views would be pickled as copies)."""
        d = dict(self.__dict__)
        net = self._state.model
        d["_state"] = dataclasses.replace(self._state, model=None)
        d["_network"] = (net.sizes, net.dtype.str, net.params, net.input_scale, net.input_shift, net.activations)
        return d

    def __setstate__(self, d):
        sizes, dtype, params, scale, shift, *activations = d.pop("_network")  # pickles of before: relu
        net = MLP(sizes, np.dtype(dtype), scale, shift, *activations)
        net.params[...] = params
        d["_state"].model = net
        self.__dict__.update(d)


# ---------------------------------------------------------------- checks and conversions


def _check_backend(backend):
    if not isinstance(backend, str) or backend not in BACKEND_NAMES:
        raise ValueError(f"backend must be one of {', '.join(BACKEND_NAMES)}, got {backend!r}")


def check_memory(r, X, copies, threads, backend, val_rows=0):
    """MemoryError, before anything large is allocated, when training on rows X with recipe r would
    need more memory than this process may allocate (recipe.check_memory); copies: the bytes of X
    still to be copied (a validation split); val_rows: the rows of a validation set given apart."""
    try:
        recipe.check_memory(r.layers, min(r.batch_size, len(X)), r.dtype, copies, name=argument,
                            eval_rows=max(len(X), val_rows), threads=threads or default_threads(), backend=backend,
                            optimizer=r.optimizer, pixels=X.dtype == np.uint8, api=True)
    except InputError as exc:
        raise MemoryError(str(exc)) from None


def _hidden_sizes(sizes):
    """hidden_layer_sizes as a tuple of positive ints (an int alone is one layer, as in scikit-learn)."""
    if isinstance(sizes, (int, np.integer)) and not isinstance(sizes, (bool, np.bool_)):
        sizes = (sizes,)
    try:
        sizes = tuple(sizes)
    except TypeError:
        raise TypeError(f"hidden_layer_sizes must be a tuple of positive integers, got {sizes!r}") from None
    if not all(isinstance(v, (int, np.integer)) and not isinstance(v, (bool, np.bool_)) and v > 0 for v in sizes):
        raise ValueError(f"hidden_layer_sizes must be a tuple of positive integers, got {sizes!r}")
    return tuple(int(v) for v in sizes)


def _validation(validation):
    """(val_split for recipe.split, or 0 with an explicit (X_val, y_val) pair, which is returned too)."""
    if validation is None:
        return 0, None
    if isinstance(validation, tuple):
        if len(validation) != 2:
            raise ValueError(f"validation as a tuple must be (X_val, y_val), got {len(validation)} items")
        return 0, validation
    if isinstance(validation, (bool, np.bool_)) or not isinstance(validation, (int, float, np.integer, np.floating)):
        raise TypeError("validation must be a fraction, a count, an (X_val, y_val) pair or None, "
                        f"got {type(validation).__name__}")
    if isinstance(validation, (float, np.floating)) and not 0 <= validation < 1:
        raise ValueError(f"validation as a fraction must be in [0, 1), got {validation}")
    return validation, None


def encode_labels(y, n, what="y"):
    """(classes_, class indices): classes_ = np.unique(y), indices into it as small_labels."""
    y = _labels(y, n, what)
    try:
        classes, index = np.unique(y, return_inverse=True)
    except TypeError:
        raise TypeError(f"{what} mixes labels of types that cannot be compared (such as numbers and strings)") \
            from None
    if len(classes) < 2:
        raise ValueError(f"{what} has 1 class ({classes[0]!r}); a classifier needs at least 2")
    return classes, small_labels(index.reshape(-1))


def encode_known(y, classes, n, what="y"):
    """Class indices of labels y, each of which must be one of classes (sorted, as np.unique gives)."""
    y = _labels(y, n, what)
    try:
        index = np.searchsorted(classes, y)
    except TypeError:
        raise TypeError(f"{what} holds labels of another type than the classes {classes!r}") from None
    index = np.minimum(index, len(classes) - 1)
    unknown = classes[index] != y
    if unknown.any():
        raise ValueError(f"{what} holds labels the model does not know: {np.unique(y[unknown])[:5]!r}; "
                         f"its classes are {classes!r}")
    return small_labels(index)


def _labels(y, n, what):
    y = np.asarray(y)
    if y.ndim != 1:
        raise ValueError(f"{what} must be 1-D, one label per sample; got shape {y.shape}")
    if len(y) != n:
        raise ValueError(f"{what} has {len(y)} labels but there are {n} samples")
    if y.dtype.kind == "f" and not np.isfinite(y).all():
        raise ValueError(f"{what} holds NaN or infinite labels")
    if y.dtype.kind == "O" and any(v is None or (isinstance(v, float) and v != v) for v in y):
        raise ValueError(f"{what} holds missing labels (None or NaN)")
    return y


def _storable(classes):
    """classes as an array a model file can hold without pickle: numbers, booleans or text. Integers
    are kept exactly, as int64 or uint64; beyond those a ValueError says so."""
    if classes.dtype.kind in checkpoint.CLASS_KINDS:
        return classes
    if all(isinstance(c, str) for c in classes):
        return np.array(classes.tolist(), dtype=str)
    if all(isinstance(c, (int, np.integer)) and not isinstance(c, bool) for c in classes):
        values = [int(c) for c in classes]
        for dtype in (np.int64, np.uint64):
            info = np.iinfo(dtype)
            if info.min <= min(values) and max(values) <= info.max:
                return np.array(values, dtype)
        raise ValueError(f"integer labels beyond 64 bits (such as {max(values, key=abs)}) cannot be stored in a "
                         "model file; use smaller numbers or strings as labels, or pickle/joblib the model")
    raise ValueError(f"labels of type {type(classes[0]).__name__} cannot be stored in a model file without "
                     "pickle; use numbers or strings as labels, or pickle/joblib the model")


def _path(path, what="path"):
    """A file path given as str, bytes or os.PathLike, as str; TypeError naming `what` otherwise."""
    try:
        return os.fsdecode(os.fspath(path))
    except TypeError:
        raise TypeError(f"{what} must be a file path (str, bytes or os.PathLike), got {type(path).__name__}") \
            from None


def _label_kind(labels):
    """'text' or 'number' (booleans too), the two kinds of label scikit-learn refuses to compare; else 'other'."""
    if labels.dtype.kind in "US":
        return "text"
    if labels.dtype.kind in "biuf":
        return "number"
    values = labels.ravel().tolist()
    if all(isinstance(v, str) for v in values):
        return "text"
    if all(isinstance(v, (bool, int, float, np.bool_, np.number)) for v in values):
        return "number"
    return "other"


# Network inputs (x * input_scale + input_shift) beyond which a prediction saturates: the fourth root
# of the dtype's largest number, far beyond any training row, so that products and sums in a few
# layers stay finite.
def input_limit(dtype):
    return float(np.finfo(dtype).max) ** 0.25


def saturated(net, X):
    """Rows X (float64) with each feature clipped to the raw values whose network inputs lie within
    ±input_limit: a finite row too large for the arithmetic predicts as its saturated self."""
    X = np.asarray(X, np.float64)
    scale, shift = net.input_scale.astype(np.float64), net.input_shift.astype(np.float64)
    limit = input_limit(net.dtype)
    with np.errstate(all="ignore"):
        ends = np.stack([(-limit - shift) / scale, (limit - shift) / scale])
    low = np.where(scale != 0, ends.min(axis=0), -np.inf)
    high = np.where(scale != 0, ends.max(axis=0), np.inf)
    top = float(np.finfo(net.dtype).max)
    return np.clip(X, np.maximum(low, -top), np.minimum(high, top))
