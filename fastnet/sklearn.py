"""fastnet as a scikit-learn estimator: MLPClassifier with scikit-learn's parameter names.

Needs scikit-learn (pip install 'fastnet-mlp[sklearn]'); `import fastnet` does not.
"""

import warnings

import numpy as np

try:
    from sklearn.base import BaseEstimator, ClassifierMixin
    from sklearn.exceptions import ConvergenceWarning
    from sklearn.model_selection import train_test_split
    from sklearn.utils import check_random_state
    from sklearn.utils.multiclass import check_classification_targets
    from sklearn.utils.validation import check_is_fitted, validate_data
except ImportError as exc:  # absent, or older than 1.6 (validate_data)
    raise ImportError(f"fastnet.sklearn needs scikit-learn >= 1.6 ({exc}); install the extra: "
                      "pip install 'fastnet-mlp[sklearn]'") from exc

from kernels import ACTIVATIONS, layer_views

from . import recipe
from .api import Model, check_memory, encode_known, python_errors, settings
from .data.arrays import as_rows

SOLVERS = {"adam": "adam", "sgd": "gd"}  # scikit-learn's name -> fastnet's optimiser


class _Converged(Exception):
    """Raised after an epoch to end training: the stopping rule was met."""


class _EpochEnd:
    """Everything training changes, as it was at the end of the last complete epoch (or the start):
    the network, the optimiser, the data-order generator, the history, the estimator's bookkeeping
    and early stopping's best network. An epoch cut short by Ctrl-C is rolled back to it, so the
    estimator is as after that epoch: its loss_ is that epoch's, and partial_fit trains a whole
    epoch from there (the steps of the cut epoch are not kept, unlike scikit-learn's own)."""

    KEPT = ("n_iter_", "t_", "loss_", "best_loss_", "_no_improvement_count", "best_validation_score_")
    GROWN = ("loss_curve_", "validation_scores_")

    def __init__(self, estimator, best):
        state = estimator.model_._state
        self.params = state.model.params.copy()
        self.optimizer = {k: np.array(v, copy=True) for k, v in state.optimizer.state().items()}
        self.rng, self.epoch = state.rng.bit_generator.state, state.epoch
        self.history = _copied(state.history)
        self.kept = {k: getattr(estimator, k) for k in self.KEPT if hasattr(estimator, k)}
        self.grown = {k: len(getattr(estimator, k)) for k in self.GROWN if getattr(estimator, k, None) is not None}
        self.best = best

    def restore(self, estimator):
        """Put estimator back as it was; returns early stopping's best network then."""
        state = estimator.model_._state
        state.model.params[...] = self.params
        state.optimizer.load_state(self.optimizer)
        state.rng.bit_generator.state = self.rng
        state.epoch, state.batch, state.partial_losses, state.partial_correct = self.epoch, 0, [], []
        state.history = self.history
        for k in self.KEPT:
            if k in self.kept:
                setattr(estimator, k, self.kept[k])
            elif hasattr(estimator, k):
                delattr(estimator, k)
        for k, n in self.grown.items():
            del getattr(estimator, k)[n:]
        return self.best


def _copied(history):
    """A copy of a training.History whose lists are the copies' own (its step losses thinned as they
    grow: not only appended to)."""
    return type(history)(**{k: list(v) if isinstance(v, list) else v for k, v in vars(history).items()})


class _InOrder(np.random.Generator):
    """A generator whose permutation(n) is 0..n-1, for shuffle=False: the training loop draws each
    epoch's order from the run's generator, so this one makes it take the rows in order."""

    def permutation(self, x):
        return np.arange(x)


class MLPClassifier(ClassifierMixin, BaseEstimator):
    """Multilayer perceptron classifier trained by fastnet's kernels, with scikit-learn's interface.

    The parameters shared with ``sklearn.neural_network.MLPClassifier`` have its names, defaults
    and meanings, except where noted; the last five are fastnet's own. The network: hidden layers of
    one activation, a softmax output (also for two classes), cross-entropy, mini-batch Adam or SGD.

    ONNX (extra ``[onnx]``): after ``fastnet.export.register_skl2onnx()``, which imports skl2onnx
    (importing fastnet does not), ``skl2onnx.to_onnx(pipeline, X[:1], options={MLPClassifier:
    {"zipmap": False}})`` converts a pipeline holding the estimator; zipmap=False gives the
    probabilities as an (N, K) tensor, skl2onnx's default zipmap=True as a list of dicts.
    ``model_.to_onnx(path)`` exports the estimator alone (``fastnet.Model.to_onnx``).

    Parameters
    ----------
    hidden_layer_sizes : tuple of int, default=(100,)
        Units of each hidden layer.
    activation : {"relu", "tanh", "logistic", "identity"}, default="relu"
        The hidden layers' activation.
    solver : {"adam", "sgd"}, default="adam"
        "sgd" is plain mini-batch gradient descent (no momentum). scikit-learn's "lbfgs" is not offered.
    alpha : float, default=1e-4
        L2 penalty on the weights, scikit-learn's: the loss gains ½·alpha·Σ‖W‖²/N for a batch of N rows.
    batch_size : int or "auto", default="auto"
        Samples per step; "auto" is min(200, n_samples). Larger than n_samples: clipped, with a warning.
    learning_rate_init : float, default=1e-3
        The learning rate (the base of `schedule`).
    max_iter : int, default=200
        Most epochs of one ``fit``.
    shuffle : bool, default=True
        Draw a new order of the samples each epoch.
    random_state : int, RandomState instance or None, default=None
        Seeds the initialisation (He, not Glorot), the batch order and the early-stopping split.
        An int seeds them as ``fastnet.fit(seed=...)`` does.
    tol : float, default=1e-4
        Training stops when the loss (or with early_stopping, the validation score) has not
        improved by tol for more than n_iter_no_change epochs in a row.
    verbose : bool, default=False
        Print the loss after each epoch.
    warm_start : bool, default=False
        ``fit`` continues from the fitted network (same classes), with a fresh optimiser. As with
        scikit-learn's MLPClassifier, the fitted network is continued as it is: ``hidden_layer_sizes``,
        ``dtype`` and ``standardize`` changed by ``set_params`` since it was made do not apply to it
        (scikit-learn keeps the fitted coefficients too); they apply at the next ``fit`` without
        warm_start, which makes a new network.
    early_stopping : bool, default=False
        Hold out validation_fraction of the samples (stratified); stop when their accuracy stalls
        and keep the network of the best epoch.
    validation_fraction : float, default=0.1
        Held out with early_stopping.
    beta_1, beta_2, epsilon : float, default=0.9, 0.999, 1e-8
        Adam's moment decays and epsilon.
    n_iter_no_change : int, default=10
        Epochs without improvement of tol before stopping.
    schedule : {"constant", "cosine"}, default="constant"
        fastnet: "cosine" decays the rate to near zero over max_iter epochs (partial_fit: constant).
    standardize : bool, default=True
        fastnet: standardise each feature with the training samples' mean and deviation, stored with
        the network (see ``fastnet.fit``; uint8 input is taken for pixels). False: as given.
    dtype : {"float32", "float64"}, default="float32"
        fastnet: precision of the parameters and the arithmetic.
    backend : {"numba", "numpy"}, default="numba"
        fastnet: the compiled kernels or the NumPy reference.
    threads : int or None, default=None
        fastnet: threads of one fit; None uses ``fastnet.threads.default_threads()``, which inside a
        joblib or Dask worker is the worker's share of the cores.

    Attributes
    ----------
    classes_ : ndarray of shape (n_classes,)
    n_features_in_ : int
    feature_names_in_ : ndarray of str, where X had column names
    n_iter_ : int
        Epochs run by the last fit (1 after partial_fit, as in scikit-learn).
    loss_ : float
        Mean training loss of the last epoch.
    loss_curve_ : list of float
        Mean training loss of each epoch.
    best_loss_ : float or None
        Smallest loss_ (None with early_stopping).
    validation_scores_ : list of float or None
        Accuracy on the held-out samples after each epoch (early_stopping only).
    best_validation_score_ : float or None
    t_ : int
        Samples seen by the optimiser.
    coefs_ : list of ndarray
        coefs_[i] (n_units_i, n_units_i+1): the weights as they act on X itself, the stored
        standardisation folded into the first layer, so that relu(X @ coefs_[0] + intercepts_[0])...
        reproduces predict_proba. Read-only copies.
    intercepts_ : list of ndarray
    n_layers_ : int
    n_outputs_ : int
        n_classes (a softmax output also for two classes, where scikit-learn has one logistic unit).
    out_activation_ : str
        "softmax".
    model_ : fastnet.Model
        The trained network itself: ``model_.save(path)`` writes the command line's model file
        (``python -m fastnet.evaluate`` reads it, ``fastnet.load`` gives it back). Its history's
        training accuracy is each epoch's running accuracy, counted in the steps themselves: the
        estimator makes no pass over the training rows after an epoch.

    Examples
    --------
    >>> from sklearn.datasets import load_iris
    >>> from fastnet.sklearn import MLPClassifier
    >>> X, y = load_iris(return_X_y=True)
    >>> clf = MLPClassifier(hidden_layer_sizes=(32,), batch_size=16, learning_rate_init=1e-2, random_state=0)
    >>> bool(clf.fit(X, y).score(X, y) > 0.9)
    True
    >>> clf.n_iter_ < clf.max_iter  # stopped: the loss no longer improved by tol
    True
    >>> clf.predict_proba(X[:2]).shape
    (2, 3)
    """

    def __init__(self, hidden_layer_sizes=(100,), activation="relu", *, solver="adam", alpha=1e-4,
                 batch_size="auto", learning_rate_init=1e-3, max_iter=200, shuffle=True, random_state=None,
                 tol=1e-4, verbose=False, warm_start=False, early_stopping=False, validation_fraction=0.1,
                 beta_1=0.9, beta_2=0.999, epsilon=1e-8, n_iter_no_change=10, schedule="constant",
                 standardize=True, dtype="float32", backend="numba", threads=None):
        self.hidden_layer_sizes = hidden_layer_sizes
        self.activation = activation
        self.solver = solver
        self.alpha = alpha
        self.batch_size = batch_size
        self.learning_rate_init = learning_rate_init
        self.max_iter = max_iter
        self.shuffle = shuffle
        self.random_state = random_state
        self.tol = tol
        self.verbose = verbose
        self.warm_start = warm_start
        self.early_stopping = early_stopping
        self.validation_fraction = validation_fraction
        self.beta_1 = beta_1
        self.beta_2 = beta_2
        self.epsilon = epsilon
        self.n_iter_no_change = n_iter_no_change
        self.schedule = schedule
        self.standardize = standardize
        self.dtype = dtype
        self.backend = backend
        self.threads = threads

    # ------------------------------------------------------------ fitting

    def fit(self, X, y):
        """Train on X (n_samples, n_features) and labels y (n_samples,) for up to max_iter epochs.
        Ctrl-C ends training as in scikit-learn (a warning, and fit returns), the estimator as after
        its last complete epoch (an epoch cut short is rolled back; partial_fit alike).

        Returns
        -------
        self : MLPClassifier
        """
        return self._fit(X, y, incremental=False)

    def partial_fit(self, X, y, classes=None):
        """One epoch over X and y, continuing the network and the optimiser's state (Adam's moments
        and step count) of the previous calls; the standardisation is the first call's.

        Parameters
        ----------
        X : array_like of shape (n_samples, n_features)
        y : array_like of shape (n_samples,)
        classes : array_like of shape (n_classes,), default=None
            Every class of all calls; needed on the first call.

        Returns
        -------
        self : MLPClassifier
        """
        if self.early_stopping:
            raise ValueError("partial_fit does not support early_stopping=True")
        if getattr(self, "classes_", None) is None:
            if classes is None:
                raise ValueError("classes must be passed on the first call to partial_fit.")
        elif classes is not None and not np.array_equal(self.classes_, np.unique(classes)):
            raise ValueError(f"`classes={classes!r}` is not the same as on last call to partial_fit, "
                             f"was: {self.classes_!r}")
        return self._fit(X, y, incremental=True, classes=classes)

    def _fit(self, X, y, incremental, classes=None):
        self._check_parameters()
        first = not hasattr(self, "model_") or not (self.warm_start or incremental)
        X, y = validate_data(self, X, y, dtype="numeric", reset=first)
        check_classification_targets(y)
        X = as_rows(X, finite=False)  # finite: checked by validate_data
        if first:
            self.classes_ = np.unique(classes if incremental else y)
            if len(self.classes_) < 2:
                raise ValueError(f"y has 1 class ({self.classes_[0]!r}); a classifier needs at least 2 classes")
        else:
            found = np.unique(y)
            if not incremental and set(found.tolist()) != set(self.classes_.tolist()):
                raise ValueError("warm_start can only be used where `y` has the same classes as in the previous "
                                 f"call to fit. Previously got {self.classes_}, `y` has {found}")
        labels = encode_known(y, self.classes_, len(X))
        seed = self._seed()
        if self.early_stopping and not incremental:
            X_train, X_val, y_train, y_val = train_test_split(X, labels, test_size=self.validation_fraction,
                                                              random_state=seed, stratify=labels)
            if len(y_val) < 2:
                raise ValueError("The validation set is too small. Increase 'validation_fraction' or the size of "
                                 "your dataset.")
            train, val = (np.ascontiguousarray(X_train), y_train), (X_val, y_val)
        else:
            train, val = (X, labels), (X[:0], labels[:0])
        n = len(train[1])
        batch = min(200, n) if self.batch_size == "auto" else int(self.batch_size)
        if not 1 <= batch <= n and self.batch_size != "auto":
            warnings.warn("Got `batch_size` less than 1 or larger than sample size. It is going to be clipped")
            batch = int(np.clip(batch, 1, n))
        s = self._settings(batch, seed, X.shape[1], incremental)
        if first:
            sizes = tuple(int(v) for v in s["layers"].split(","))
            s["input_dtype"] = X.dtype.name  # what its inputs are (model files record it; fastnet.fit)
            check_memory(s, sizes, train[0], 0)
            with python_errors():  # features too large for dtype: a ValueError (recipe.check_input_range)
                state = recipe.new_state(s, sizes, train[0], "standardize" if self.standardize else "none")
            self.model_ = Model(state, s, self.classes_, threads=self.threads)
            self.t_ = 0
            self.loss_curve_ = []
            self._no_improvement_count = 0
            if self.early_stopping:
                self.validation_scores_, self.best_validation_score_, self.best_loss_ = [], -np.inf, None
            else:
                self.best_loss_, self.validation_scores_, self.best_validation_score_ = np.inf, None, None
        else:
            model = self.model_
            if not incremental:  # warm start: the fitted network, a fresh optimiser (as scikit-learn)
                model._state.optimizer = recipe.new_optimizer(s, model.network)
            model.settings.update({k: v for k, v in s.items() if k not in ("layers", "standardize", "dtype")})
            model.backend, model.threads = self.backend, self.threads
        self._train(train, val, 1 if incremental else self.max_iter, incremental)
        return self

    def _train(self, train, val, epochs, incremental):
        """Run up to `epochs` epochs with scikit-learn's bookkeeping and stopping rule. Ctrl-C ends
        training as scikit-learn's does (a warning, and fit returns), the epoch it cut short rolled
        back (_EpochEnd)."""
        model = self.model_
        state = model._state
        state.rng = (_InOrder if not self.shuffle else np.random.Generator)(state.rng.bit_generator)
        self.n_iter_ = 0
        best = None
        end = _EpochEnd(self, best)

        def on_epoch(st):
            nonlocal best, end
            self.n_iter_ += 1
            self.t_ += len(train[1])
            self.loss_ = float(st.history.train_loss[-1])
            self.loss_curve_.append(self.loss_)
            if self.verbose:
                print(f"Iteration {self.n_iter_}, loss = {self.loss_:.8f}")
            if self.early_stopping and not incremental:
                score = float(st.history.val_accuracy[-1])
                self.validation_scores_.append(score)
                if self.verbose:
                    print(f"Validation score: {score:f}")
                self._no_improvement_count = (self._no_improvement_count + 1
                                              if score < self.best_validation_score_ + self.tol else 0)
                if score > self.best_validation_score_:
                    self.best_validation_score_ = score
                    best = model.network.params.copy()
            else:
                self._no_improvement_count = (self._no_improvement_count + 1
                                              if self.loss_ > self.best_loss_ - self.tol else 0)
                self.best_loss_ = min(self.best_loss_, self.loss_)
            end = _EpochEnd(self, best)  # this epoch is complete: a Ctrl-C from now on comes back here
            if self._no_improvement_count > self.n_iter_no_change:
                what = "Validation score" if self.early_stopping and not incremental else "Training loss"
                if self.verbose:
                    print(f"{what} did not improve more than tol={self.tol:f} for {self.n_iter_no_change} "
                          "consecutive epochs. Stopping.")
                raise _Converged
            if not incremental and self.n_iter_ == self.max_iter:
                warnings.warn(f"Stochastic Optimizer: Maximum iterations ({self.max_iter}) reached and the "
                              "optimization hasn't converged yet.", ConvergenceWarning)

        try:
            # scikit-learn's estimators report the epoch's mean step loss only: no pass over the training rows
            model._train(train, val, state.epoch + epochs, on_epoch, lr_name="learning_rate_init")
        except _Converged:
            model.settings["epochs"] = state.epoch
        except KeyboardInterrupt:
            best = end.restore(self)
            model.settings["epochs"] = state.epoch
            warnings.warn("Training interrupted by user.")
        if best is not None:  # early stopping keeps the network of the best epoch
            model.network.params[...] = best

    def _check_parameters(self):
        if self.activation not in ACTIVATIONS:
            raise ValueError(f"activation must be one of {', '.join(ACTIVATIONS)}, got {self.activation!r}")
        if not (isinstance(self.alpha, (int, float, np.number)) and not isinstance(self.alpha, bool)
                and 0 <= self.alpha < np.inf):
            raise ValueError(f"alpha must be a finite number >= 0, got {self.alpha!r}")
        if self.solver not in SOLVERS:
            raise ValueError(f"solver must be one of {', '.join(SOLVERS)}, got {self.solver!r} "
                             "(fastnet has no 'lbfgs')")
        if not (self.batch_size == "auto" or (isinstance(self.batch_size, (int, np.integer))
                                              and not isinstance(self.batch_size, bool))):
            raise ValueError(f"batch_size must be 'auto' or an integer, got {self.batch_size!r}")
        for name in ("max_iter", "n_iter_no_change"):
            value = getattr(self, name)
            if not (isinstance(value, (int, np.integer)) and not isinstance(value, bool) and value >= 1):
                raise ValueError(f"{name} must be an integer >= 1, got {value!r}")
        if not (isinstance(self.tol, (int, float, np.number)) and self.tol >= 0):
            raise ValueError(f"tol must be a number >= 0, got {self.tol!r}")
        if not (isinstance(self.validation_fraction, (int, float, np.number)) and 0 < self.validation_fraction < 1):
            raise ValueError(f"validation_fraction must be in (0, 1), got {self.validation_fraction!r}")

    def _seed(self):
        """An int random_state seeds fastnet as is; None or a RandomState draws a seed from it."""
        if isinstance(self.random_state, (int, np.integer)) and not isinstance(self.random_state, bool):
            return int(self.random_state)
        return int(check_random_state(self.random_state).randint(np.iinfo(np.int32).max))

    def _settings(self, batch, seed, features, incremental):
        """fastnet's settings (recipe names) from the estimator's parameters, checked."""
        hidden = self.hidden_layer_sizes
        hidden = list(hidden) if hasattr(hidden, "__iter__") else [hidden]
        if not all(isinstance(h, (int, np.integer)) and not isinstance(h, bool) and h > 0 for h in hidden):
            raise ValueError(f"hidden_layer_sizes must be > 0, got {self.hidden_layer_sizes}.")
        names = {"lr": "learning_rate_init", "beta1": "beta_1", "beta2": "beta_2", "eps": "epsilon"}
        try:
            return settings(epochs=int(self.max_iter), batch_size=batch, lr=self.learning_rate_init,
                            schedule="constant" if incremental else self.schedule, warmup=0,
                            activation=self.activation, alpha=float(self.alpha),
                            optimizer=SOLVERS[self.solver], beta1=self.beta_1, beta2=self.beta_2, eps=self.epsilon,
                            standardize=self.standardize, val_split=0, seed=seed,
                            layers=",".join(map(str, (features, *map(int, hidden), len(self.classes_)))),
                            dtype=self.dtype, backend=self.backend, threads=self.threads)
        except ValueError as exc:
            message = str(exc)
            for ours, theirs in names.items():
                if message.startswith(ours + " "):
                    message = theirs + message[len(ours):]
            raise ValueError(message) from None

    # ------------------------------------------------------------ predicting

    def _rows(self, X):
        check_is_fitted(self)
        X = validate_data(self, X, dtype="numeric", reset=False)
        return as_rows(X, finite=False)

    def predict_proba(self, X):
        """Probability of each class (columns in the order of classes_), float64 rows summing to 1."""
        X = self._rows(X)
        return self.model_._proba(X)

    def predict_log_proba(self, X):
        """The logarithm of predict_proba."""
        X = self._rows(X)
        return self.model_._log_proba(X)

    def predict(self, X):
        """The most probable class of each sample."""
        X = self._rows(X)
        return self.classes_[self.model_._logits(X).argmax(axis=1)]

    # ------------------------------------------------------------ what scikit-learn users read

    @property
    def coefs_(self):
        W, _ = self._layers()
        return W

    @property
    def intercepts_(self):
        return self._layers()[1]

    def _layers(self):
        """Per-layer weights and biases acting on raw X: W0' = diag(scale)·W0, b0' = b0 + shift·W0."""
        if not hasattr(self, "model_"):
            raise AttributeError("coefs_ and intercepts_ exist once the estimator is fitted")
        net = self.model_.network
        W, b = layer_views(net.params, net.sizes)
        W, b = [w.copy() for w in W], [v.copy() for v in b]
        first = W[0].astype(np.float64)
        b[0] = (b[0] + net.input_shift.astype(np.float64) @ first).astype(net.dtype)
        W[0] = (net.input_scale.astype(np.float64)[:, None] * first).astype(net.dtype)
        for a in (*W, *b):
            a.flags.writeable = False
        return W, b

    @property
    def n_layers_(self):
        check_is_fitted(self)
        return len(self.model_.network.sizes)

    @property
    def n_outputs_(self):
        check_is_fitted(self)
        return self.model_.network.sizes[-1]

    @property
    def out_activation_(self):
        check_is_fitted(self)
        return "softmax"

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.input_tags.allow_nan = False
        tags.classifier_tags.multi_label = False
        return tags
