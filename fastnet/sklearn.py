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

from kernels import layer_views

from . import recipe
from .api import Model, check_memory, encode_known, python_errors
from .backend import BACKEND_NAMES
from .data.arrays import as_rows

SOLVERS = {"adam": "adam", "sgd": "gd"}  # scikit-learn's name -> fastnet's optimiser


# The estimator's names of the recipe's fields (the others by their own names): one map for every message.
PARAMETERS = {"layers": "hidden_layer_sizes", "lr": "learning_rate_init", "beta1": "beta_1", "beta2": "beta_2",
              "eps": "epsilon", "epochs": "max_iter", "optimizer": "solver", "seed": "random_state"}


def parameter(field):
    """How the estimator names a recipe field: its parameter."""
    return PARAMETERS.get(field, field)


class _Bookkeeping:
    """The estimator's attributes that each epoch updates, as at the end of the last complete epoch:
    a Ctrl-C puts them back, as Model.train puts the network back (and the steps of the cut epoch
    are not kept, unlike scikit-learn's own)."""

    KEPT = ("n_iter_", "t_", "loss_", "best_loss_", "_no_improvement_count", "best_validation_score_")
    GROWN = ("loss_curve_", "validation_scores_")

    def __init__(self, estimator, best):
        self.kept = {k: getattr(estimator, k) for k in self.KEPT if hasattr(estimator, k)}
        self.grown = {k: len(getattr(estimator, k)) for k in self.GROWN if getattr(estimator, k, None) is not None}
        self.best = best

    def restore(self, estimator):
        """Put estimator back as it was; returns early stopping's best network then."""
        for k in self.KEPT:
            if k in self.kept:
                setattr(estimator, k, self.kept[k])
            elif hasattr(estimator, k):
                delattr(estimator, k)
        for k, n in self.grown.items():
            del getattr(estimator, k)[n:]
        return self.best


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
        seed = self._seed()
        validation = None
        if self.early_stopping and not incremental:
            X, X_val, y, y_val = train_test_split(X, y, test_size=self.validation_fraction, random_state=seed,
                                                  stratify=encode_known(y, self.classes_, len(X)))
            if len(y_val) < 2:
                raise ValueError("The validation set is too small. Increase 'validation_fraction' or the size of "
                                 "your dataset.")
            X, validation = np.ascontiguousarray(X), (X_val, y_val)
        n = len(y)
        batch = min(200, n) if self.batch_size == "auto" else int(self.batch_size)
        if not 1 <= batch <= n and self.batch_size != "auto":
            warnings.warn("Got `batch_size` less than 1 or larger than sample size. It is going to be clipped")
            batch = int(np.clip(batch, 1, n))
        r = self._recipe(batch, seed, X.shape[1], incremental)
        if first:
            check_memory(r, X, 0, self.threads, self.backend)
            with python_errors():  # features too large for dtype: a ValueError (recipe.check_input_range)
                state = recipe.new_state(r, X, "standardize" if self.standardize else "none")
            self.model_ = Model(state, r, self.classes_, trained={"input_dtype": X.dtype.name})
            self.t_ = 0
            self.loss_curve_ = []
            self._no_improvement_count = 0
            if self.early_stopping:
                self.validation_scores_, self.best_validation_score_, self.best_loss_ = [], -np.inf, None
            else:
                self.best_loss_, self.validation_scores_, self.best_validation_score_ = np.inf, None, None
        self.model_.backend, self.model_.threads = self.backend, self.threads
        # warm start: the fitted network, a fresh optimiser (as scikit-learn)
        self._train(X, y, validation, r, incremental, fresh_optimizer=not (first or incremental))
        return self

    def _train(self, X, y, validation, r, incremental, fresh_optimizer):
        """Run up to max_iter epochs (partial_fit: one) with scikit-learn's bookkeeping and stopping
        rule (Model.train). Ctrl-C ends training as scikit-learn's does (a warning, and fit returns),
        the epoch it cut short rolled back."""
        model = self.model_
        self.n_iter_ = 0
        best = None
        end = _Bookkeeping(self, best)

        def on_epoch(model):
            nonlocal best, end
            self.n_iter_ += 1
            self.t_ += len(y)
            self.loss_ = float(model.history["loss"][-1])
            self.loss_curve_.append(self.loss_)
            if self.verbose:
                print(f"Iteration {self.n_iter_}, loss = {self.loss_:.8f}")
            if self.early_stopping and not incremental:
                score = float(model.history["val_accuracy"][-1])
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
            end = _Bookkeeping(self, best)  # this epoch is complete: a Ctrl-C from now on comes back here
            if self._no_improvement_count > self.n_iter_no_change:
                if self.verbose:
                    what = "Validation score" if self.early_stopping and not incremental else "Training loss"
                    print(f"{what} did not improve more than tol={self.tol:f} for {self.n_iter_no_change} "
                          "consecutive epochs. Stopping.")
                return True
            if not incremental and self.n_iter_ == self.max_iter:
                warnings.warn(f"Stochastic Optimizer: Maximum iterations ({self.max_iter}) reached and the "
                              "optimization hasn't converged yet.", ConvergenceWarning)
            return False

        try:
            # scikit-learn's estimators report the epoch's mean step loss only: no pass over the training rows
            model.train(X, y, epochs=1 if incremental else self.max_iter, validation=validation, shuffle=self.shuffle,
                        on_epoch=on_epoch, recipe=r, fresh_optimizer=fresh_optimizer)
        except KeyboardInterrupt:
            best = end.restore(self)
            warnings.warn("Training interrupted by user.")
        if best is not None:  # early stopping keeps the network of the best epoch
            model.network.params[...] = best

    def _check_parameters(self):
        """The parameters that are not recipe fields (those: Recipe, named by `parameter`)."""
        if self.solver not in SOLVERS:
            raise ValueError(f"solver must be one of {', '.join(SOLVERS)}, got {self.solver!r} "
                             "(fastnet has no 'lbfgs')")
        if not (self.batch_size == "auto" or (isinstance(self.batch_size, (int, np.integer))
                                              and not isinstance(self.batch_size, bool))):
            raise ValueError(f"batch_size must be 'auto' or an integer, got {self.batch_size!r}")
        for name in ("n_iter_no_change",):
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

    def _recipe(self, batch, seed, features, incremental):
        """fastnet's Recipe from the estimator's parameters, a bad one named as the parameter."""
        hidden = self.hidden_layer_sizes
        hidden = list(hidden) if hasattr(hidden, "__iter__") else [hidden]
        if not all(isinstance(h, (int, np.integer)) and not isinstance(h, bool) and h > 0 for h in hidden):
            raise ValueError(f"hidden_layer_sizes must be > 0, got {self.hidden_layer_sizes}.")
        if not isinstance(self.backend, str) or self.backend not in BACKEND_NAMES:
            raise ValueError(f"backend must be one of {', '.join(BACKEND_NAMES)}, got {self.backend!r}")
        recipe.check_threads(self.threads)
        return recipe.make(parameter, layers=(features, *hidden, len(self.classes_)), activation=self.activation,
                           alpha=self.alpha, epochs=self.max_iter, batch_size=batch, optimizer=SOLVERS[self.solver],
                           lr=self.learning_rate_init, schedule="constant" if incremental else self.schedule, warmup=0,
                           beta1=self.beta_1, beta2=self.beta_2, eps=self.epsilon, standardize=self.standardize,
                           val_split=0, seed=seed, dtype=self.dtype)

    # ------------------------------------------------------------ predicting

    def _rows(self, X):
        check_is_fitted(self)
        X = validate_data(self, X, dtype="numeric", reset=False)
        return as_rows(X, finite=False)

    def predict_proba(self, X):
        """Probability of each class (columns in the order of classes_), float64 rows summing to 1."""
        X = self._rows(X)  # NotFittedError first
        return self.model_.predict_proba(X)

    def predict_log_proba(self, X):
        """The logarithm of predict_proba."""
        X = self._rows(X)  # NotFittedError first
        return self.model_.predict_log_proba(X)

    def predict(self, X):
        """The most probable class of each sample."""
        X = self._rows(X)  # NotFittedError first
        return self.model_.predict(X)

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
