"""fastnet.sklearn.MLPClassifier: scikit-learn's own estimator checks, and what its users do with an
estimator (pipelines, grid searches, pickles, partial_fit, early stopping), beside scikit-learn's
MLPClassifier where the two should agree."""

import pickle
import warnings

import numpy as np
import pytest

sklearn = pytest.importorskip("sklearn", reason="scikit-learn is not installed (pip install '.[sklearn]')")

import joblib  # noqa: E402 (scikit-learn brings it)
from sklearn.datasets import load_digits  # noqa: E402
from sklearn.exceptions import ConvergenceWarning  # noqa: E402
from sklearn.model_selection import GridSearchCV, cross_val_score, train_test_split  # noqa: E402
from sklearn.neural_network import MLPClassifier as SkMLP  # noqa: E402
from sklearn.pipeline import make_pipeline  # noqa: E402
from sklearn.preprocessing import StandardScaler  # noqa: E402
from sklearn.utils.estimator_checks import parametrize_with_checks  # noqa: E402
from threadpoolctl import threadpool_limits  # noqa: E402

from fastnet.sklearn import MLPClassifier  # noqa: E402

# Most fits here stop at max_iter on purpose; the tests that are about the warning catch it.
pytestmark = pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")

# The instance scikit-learn's checks get: default parameters but for few epochs (20 instead of 200,
# which their own MLPClassifier check run lowers to 100), one thread (the checks fit hundreds of
# tiny problems) and a seed. check_classifiers_train's accuracy bar (> 0.83) passes with it.
CHECKED = MLPClassifier(max_iter=20, random_state=0, threads=1)


def expected_failures(estimator):
    """No check is expected to fail."""
    return {}


@pytest.mark.slow
@parametrize_with_checks([CHECKED], expected_failed_checks=expected_failures)
def test_sklearn_estimator_checks(estimator, check, monkeypatch):
    # check_array_api_input runs only where SciPy's array API switch is on (it reads the variable
    # when it runs): with NumPy arrays and dispatch enabled, results must not change.
    monkeypatch.setenv("SCIPY_ARRAY_API", "1")
    check(estimator)


@pytest.fixture(scope="module")
def digits():
    X, y = load_digits(return_X_y=True)
    return train_test_split(X, y, random_state=0)


def small(**kw):
    return MLPClassifier(**{"max_iter": 15, "random_state": 0, "threads": 1, **kw})


# ---------------------------------------------------------------- beside scikit-learn's MLPClassifier


@pytest.mark.slow
def test_default_scores_on_load_digits_as_well_as_sklearn(digits):
    """Default parameters (a seed aside) on the same split: within 0.01 of scikit-learn's or better."""
    X_train, X_test, y_train, y_test = digits
    ours = MLPClassifier(random_state=0).fit(X_train, y_train).score(X_test, y_test)
    with threadpool_limits(1):  # scikit-learn's BLAS on one thread: several times faster on 2 busy cores
        theirs = SkMLP(random_state=0).fit(X_train, y_train).score(X_test, y_test)
    print(f"load_digits test accuracy: fastnet {ours:.4f}, scikit-learn {theirs:.4f}")
    assert ours >= theirs - 0.01


@pytest.mark.parametrize("early_stopping", [False, True])
def test_the_stopping_rule_is_sklearns(digits, early_stopping):
    """With a tolerance no epoch can meet, both stop after the same number of epochs."""
    X_train, _, y_train, _ = digits
    kw = dict(tol=10.0, n_iter_no_change=3, max_iter=50, random_state=0, early_stopping=early_stopping)
    ours = MLPClassifier(**kw, threads=1).fit(X_train, y_train)
    with threadpool_limits(1):
        theirs = SkMLP(**kw).fit(X_train, y_train)
    assert ours.n_iter_ == theirs.n_iter_ == 5
    assert len(ours.loss_curve_) == 5 and ours.loss_ == ours.loss_curve_[-1]
    if early_stopping:
        assert ours.best_loss_ is None and len(ours.validation_scores_) == 5
    else:
        assert ours.best_loss_ == min(ours.loss_curve_) and ours.validation_scores_ is None


def test_convergence_warning_when_max_iter_is_reached(digits):
    X_train, _, y_train, _ = digits
    with pytest.warns(ConvergenceWarning, match=r"Maximum iterations \(3\) reached"):
        small(max_iter=3).fit(X_train, y_train)
    with warnings.catch_warnings():
        warnings.simplefilter("error", ConvergenceWarning)
        small(max_iter=30, tol=1.0, n_iter_no_change=1).fit(X_train, y_train)  # stops early: no warning


def test_early_stopping_keeps_the_best_epochs_network(digits):
    X, _, y, _ = digits
    clf = small(max_iter=12, early_stopping=True, validation_fraction=0.2, learning_rate_init=0.05)
    clf.fit(X, y)
    _, X_val, _, y_val = train_test_split(X, y, test_size=0.2, random_state=0, stratify=y)
    assert clf.best_validation_score_ == max(clf.validation_scores_)
    assert clf.score(X_val, y_val) == pytest.approx(clf.best_validation_score_)


def test_fitted_attributes(digits):
    X, _, y, _ = digits
    clf = small(hidden_layer_sizes=(20, 10)).fit(X, y)
    assert (clf.n_layers_, clf.n_outputs_, clf.out_activation_) == (4, 10, "softmax")
    assert [w.shape for w in clf.coefs_] == [(64, 20), (20, 10), (10, 10)]
    assert [b.shape for b in clf.intercepts_] == [(20,), (10,), (10,)]
    assert clf.n_iter_ == 15 and clf.t_ == 15 * len(y) and clf.n_features_in_ == 64
    np.testing.assert_array_equal(clf.classes_, np.arange(10))


def test_coefs_act_on_raw_inputs(digits):
    """A NumPy forward pass through coefs_ and intercepts_ on X itself gives predict_proba: the
    stored standardisation is folded into the first layer."""
    X, _, y, _ = digits
    clf = small(hidden_layer_sizes=(20,)).fit(X, y)
    A = np.maximum(X @ clf.coefs_[0] + clf.intercepts_[0], 0) @ clf.coefs_[1] + clf.intercepts_[1]
    P = np.exp(A - A.max(axis=1, keepdims=True))
    np.testing.assert_allclose(P / P.sum(axis=1, keepdims=True), clf.predict_proba(X), atol=1e-4)


def test_partial_fit_keeps_the_optimisers_state(digits):
    """Two partial_fit calls take the very steps of one fit of two epochs: Adam's moments and step
    count, the network and the batch order carry over from one call to the next."""
    X, _, y, _ = digits
    inc = small().partial_fit(X, y, classes=np.arange(10))
    assert inc.n_iter_ == 1 and inc.t_ == len(y)
    inc.partial_fit(X, y)
    with pytest.warns(ConvergenceWarning):
        whole = small(max_iter=2).fit(X, y)
    assert inc.t_ == whole.t_ == 2 * len(y)
    opt, ref = inc.model_._state.optimizer, whole.model_._state.optimizer
    assert opt.step == ref.step == 2 * -(-len(y) // 200)
    np.testing.assert_array_equal(opt.m, ref.m)
    np.testing.assert_array_equal(inc.model_.network.params, whole.model_.network.params)
    np.testing.assert_array_equal(inc.loss_curve_, whole.loss_curve_)


def test_partial_fit_needs_its_classes_first(digits):
    X, _, y, _ = digits
    with pytest.raises(ValueError, match="classes must be passed"):
        small().partial_fit(X, y)
    clf = small().partial_fit(X[y < 5], y[y < 5], classes=np.arange(10))  # a batch may lack classes
    assert clf.predict_proba(X).shape == (len(X), 10)
    with pytest.raises(ValueError, match="not the same"):
        clf.partial_fit(X, y, classes=np.arange(11))
    with pytest.raises(ValueError, match="early_stopping"):
        small(early_stopping=True).partial_fit(X, y, classes=np.arange(10))


def test_warm_start_continues_the_network(digits):
    X, _, y, _ = digits
    clf = small(max_iter=3, warm_start=True)
    with pytest.warns(ConvergenceWarning):
        clf.fit(X, y)
        first = clf.loss_curve_[-1]
        clf.fit(X, y)
    assert len(clf.loss_curve_) == 6 and clf.n_iter_ == 3 and clf.loss_curve_[-1] < first
    with pytest.raises(ValueError, match="same classes"):
        clf.fit(X[y < 5], y[y < 5])


def test_warm_start_after_set_params_continues_the_fitted_network_as_scikit_learn_does(digits):
    """Decided (issue 21): hidden_layer_sizes, dtype and standardize changed by set_params do not apply
    to a warm-started fit, which continues the fitted network as it is; scikit-learn's MLPClassifier
    keeps its fitted coefficients too (checked beside it here for the sizes). A fit without warm_start
    then makes the network they describe."""
    X, _, y, _ = digits
    theirs = SkMLP((5,), max_iter=2, warm_start=True, random_state=0).fit(X, y)
    theirs.set_params(hidden_layer_sizes=(7,))
    assert [c.shape for c in theirs.fit(X, y).coefs_] == [(64, 5), (5, 10)]
    clf = small(hidden_layer_sizes=(5,), max_iter=2, warm_start=True).fit(X, y)
    scale = clf.model_.network.input_scale.copy()
    for change in (dict(hidden_layer_sizes=(7,)), dict(hidden_layer_sizes=(5, 5)), dict(dtype="float64"),
                   dict(standardize=False)):
        clf.set_params(**change).fit(X, y)
        assert [c.shape for c in clf.coefs_] == [(64, 5), (5, 10)] and clf.model_.network.dtype == np.float32
        np.testing.assert_array_equal(clf.model_.network.input_scale, scale)
    clf.set_params(warm_start=False).fit(X, y)  # the last of each: (5, 5), float64, not standardised
    assert [c.shape for c in clf.coefs_] == [(64, 5), (5, 5), (5, 10)] and clf.model_.network.dtype == np.float64
    assert (clf.model_.network.input_scale == 1).all()


def test_solvers_batches_and_order(digits):
    X, X_test, y, y_test = digits
    assert small(solver="sgd", learning_rate_init=0.1).fit(X, y).score(X_test, y_test) > 0.9
    with pytest.warns(UserWarning, match="clipped"):
        small(batch_size=5000, max_iter=2).fit(X, y)
    assert small(shuffle=False).fit(X, y).score(X_test, y_test) > 0.9

    def order_state(shuffle, epochs):  # the generator that draws each epoch's order, after `epochs` epochs
        clf = small(shuffle=shuffle, max_iter=epochs, tol=0.0, n_iter_no_change=100)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ConvergenceWarning)
            return clf.fit(X[:100], y[:100]).model_._state.rng.bit_generator.state

    assert order_state(False, 1) == order_state(False, 3)  # in order: no epoch draws an order
    assert order_state(True, 1) != order_state(True, 3)


@pytest.mark.parametrize("params, words", [
    (dict(activation="softplus"), "activation must be one of identity, relu, tanh, logistic"),
    (dict(alpha=-1e-4), "alpha must be a finite number >= 0"),
    (dict(solver="lbfgs"), "lbfgs"),
    (dict(learning_rate_init=-1.0), "learning_rate_init must be a positive"),
    (dict(beta_1=1.5), "beta_1"),
    (dict(hidden_layer_sizes=(0,)), "hidden_layer_sizes"),
    (dict(batch_size="big"), "batch_size"),
    (dict(max_iter=0), "max_iter"),
    (dict(validation_fraction=1.0), "validation_fraction"),
])
def test_unsupported_and_bad_parameters_raise_value_errors(digits, params, words):
    X, _, y, _ = digits
    with pytest.raises(ValueError, match=words):
        small(**params).fit(X, y)


@pytest.mark.parametrize("activation", ["identity", "relu", "tanh", "logistic"])
def test_each_activation_and_alpha_reach_the_network(digits, activation):
    """scikit-learn's activation names and its L2 penalty: the fitted network records the activation,
    and a large alpha shrinks the weights (the penalty reaches the gradient)."""
    X, X_test, y, y_test = digits
    plain = small(activation=activation, alpha=0.0).fit(X, y)
    assert plain.model_.network.activations[:-1] == (activation,)
    assert plain.score(X_test, y_test) > 0.8
    shrunk = small(activation=activation, alpha=10.0).fit(X, y)
    assert np.linalg.norm(shrunk.coefs_[1]) < 0.95 * np.linalg.norm(plain.coefs_[1])  # unchanged if ignored


# ---------------------------------------------------------------- what users do with an estimator


def test_pickle_and_joblib_round_trips_predict_the_same(digits, tmp_path):
    X, X_test, y, _ = digits
    clf = small().fit(X, np.array([f"digit {d}" for d in y]))
    again = pickle.loads(pickle.dumps(clf))
    np.testing.assert_array_equal(again.predict_proba(X_test), clf.predict_proba(X_test))
    np.testing.assert_array_equal(again.predict(X_test), clf.predict(X_test))
    joblib.dump(clf, tmp_path / "clf.joblib")
    loaded = joblib.load(tmp_path / "clf.joblib")
    np.testing.assert_array_equal(loaded.predict_proba(X_test), clf.predict_proba(X_test))
    loaded.partial_fit(X, np.array([f"digit {d}" for d in y]))  # and it can go on learning
    assert loaded.t_ == clf.t_ + len(y)


@pytest.mark.slow
def test_pipeline_grid_search_and_cross_validation(digits):
    X, X_test, y, y_test = digits
    pipe = make_pipeline(StandardScaler(), small())
    assert pipe.fit(X, y).score(X_test, y_test) > 0.9
    scores = cross_val_score(pipe, X, y, cv=3)
    assert scores.shape == (3,) and scores.min() > 0.85
    grid = {"mlpclassifier__hidden_layer_sizes": [(16,), (32,)], "mlpclassifier__learning_rate_init": [1e-3, 1e-2]}
    search = GridSearchCV(pipe, grid, cv=3).fit(X, y)
    assert search.best_params_["mlpclassifier__learning_rate_init"] == 1e-2
    parallel = GridSearchCV(pipe, grid, cv=3, n_jobs=2).fit(X, y)  # loky workers, one thread each
    assert parallel.best_params_ == search.best_params_
    np.testing.assert_array_equal(parallel.cv_results_["mean_test_score"], search.cv_results_["mean_test_score"])


def test_the_fitted_network_is_a_fastnet_model_file_away(digits, tmp_path):
    import fastnet

    X, X_test, y, _ = digits
    clf = small().fit(X, y)
    clf.model_.save(tmp_path / "m.npz")
    np.testing.assert_array_equal(fastnet.load(tmp_path / "m.npz").predict(X_test), clf.predict(X_test))


# ---------------------------------------------------------------- Ctrl-C inside fit and partial_fit (issue 21 S4)

def ctrl_c_in_epoch(monkeypatch, epoch, steps=3):
    """Ctrl-C in the `epoch`-th epoch trained from now on (1-based), after `steps` steps of it (the
    network and Adam's moments already changed): KeyboardInterrupt raised where the training loop
    asks whether to stop, after each step."""
    from fastnet import training

    real, epochs = training.train_epoch, [0]

    def train_epoch(state, backend, images, labels, batch_size, lr_at, ws, on_batch=None, stop=None, max_chunk=64,
                    shuffle=True):
        epochs[0] += 1
        if epochs[0] != epoch:
            return real(state, backend, images, labels, batch_size, lr_at, ws, on_batch, stop, max_chunk, shuffle)
        asked = iter(range(1, 10**6))

        def ctrl_c():
            if next(asked) == steps:
                raise KeyboardInterrupt
            return False
        return real(state, backend, images, labels, batch_size, lr_at, ws, on_batch, ctrl_c, 1, shuffle)

    monkeypatch.setattr(training, "train_epoch", train_epoch)


def same_network(a, b):
    np.testing.assert_array_equal(a.model_.network.params, b.model_.network.params)
    for key, value in a.model_._state.optimizer.state().items():
        np.testing.assert_array_equal(value, b.model_._state.optimizer.state()[key])
    np.testing.assert_array_equal(a.loss_curve_, b.loss_curve_)
    assert a.loss_ == b.loss_ and a.t_ == b.t_


def test_ctrl_c_in_partial_fit_rolls_the_epoch_back_and_the_next_call_trains_a_whole_one(digits, monkeypatch):
    """The interrupted call warns, as scikit-learn's does, and leaves the estimator as after the
    previous call; the next partial_fit trains a whole epoch, to the very bits of two calls never
    interrupted, with its own loss_ (before: it finished the cut epoch, and loss_ mixed the two)."""
    X, _, y, _ = digits
    inc = small().partial_fit(X, y, classes=np.arange(10))
    before = inc.model_.network.params.copy()
    ctrl_c_in_epoch(monkeypatch, 1)
    with pytest.warns(UserWarning, match="Training interrupted by user"):
        assert inc.partial_fit(X, y) is inc
    monkeypatch.undo()
    np.testing.assert_array_equal(inc.model_.network.params, before)
    state = inc.model_._state
    assert (state.epoch, state.batch, state.partial_losses, state.optimizer.step) == (1, 0, [], 7)
    assert inc.n_iter_ == 0 and inc.t_ == len(y) and inc.loss_ == inc.loss_curve_[-1]
    assert len(state.history.train_loss) == len(state.history.step_loss) // 7 == 1
    inc.partial_fit(X, y)
    with pytest.warns(ConvergenceWarning):
        whole = small(max_iter=2).fit(X, y)
    same_network(inc, whole)
    assert inc.n_iter_ == 1 and 0 < inc.loss_ < inc.loss_curve_[0]


@pytest.mark.parametrize("early_stopping", [False, True])
def test_ctrl_c_in_fit_keeps_the_last_complete_epoch(digits, monkeypatch, early_stopping):
    """fit returns after a warning, its network and bookkeeping those of the epochs completed
    (with early stopping: the best of them), as a fit of that many epochs gives."""
    X, X_test, y, _ = digits
    ctrl_c_in_epoch(monkeypatch, 3)
    cut = small(max_iter=10, early_stopping=early_stopping)
    with pytest.warns(UserWarning, match="Training interrupted by user"):
        cut.fit(X, y)
    monkeypatch.undo()
    with pytest.warns(ConvergenceWarning):
        two = small(max_iter=2, early_stopping=early_stopping).fit(X, y)
    same_network(cut, two)
    assert cut.n_iter_ == 2 and cut.model_.recipe.epochs == 2 and len(cut.model_._state.history.train_loss) == 2
    assert cut.validation_scores_ == two.validation_scores_
    np.testing.assert_array_equal(cut.predict(X_test), two.predict(X_test))


def test_ctrl_c_in_the_first_epoch_leaves_the_initial_network(digits, monkeypatch):
    X, _, y, _ = digits
    ctrl_c_in_epoch(monkeypatch, 1)
    cut = small()
    with pytest.warns(UserWarning, match="Training interrupted by user"):
        cut.fit(X, y)
    monkeypatch.undo()
    assert cut.n_iter_ == 0 and cut.loss_curve_ == [] and not hasattr(cut, "loss_")
    assert cut.model_._state.optimizer.step == 0 and cut.model_._state.history.step_loss == []
    cut.partial_fit(X, y)  # from the initial network: the very epoch of a first partial_fit
    same_network(cut, small().partial_fit(X, y, classes=np.arange(10)))


def test_a_network_larger_than_the_memory_left_is_refused_before_allocating(monkeypatch):
    import tracemalloc

    from fastnet import memory

    X, y = load_digits(return_X_y=True)
    monkeypatch.setattr(memory, "available", lambda: 64 << 20)
    tracemalloc.start()
    try:
        with pytest.raises(MemoryError, match="use smaller hidden_layer_sizes or batch_size"):
            MLPClassifier(hidden_layer_sizes=(100_000,), threads=1).fit(X, y)
        assert tracemalloc.get_traced_memory()[1] < 8 << 20
    finally:
        tracemalloc.stop()


@pytest.mark.parametrize("dtype", [">f4", ">f8"])
def test_big_endian_rows_fit_and_predict_as_native_ones(dtype):
    X, y = load_digits(return_X_y=True)
    native = MLPClassifier(max_iter=2, random_state=0, threads=1).fit(X.astype(dtype[1:]), y)
    big = MLPClassifier(max_iter=2, random_state=0, threads=1).fit(X.astype(dtype), y)
    np.testing.assert_array_equal(big.model_.network.params, native.model_.network.params)
    np.testing.assert_array_equal(native.predict_proba(X.astype(dtype)), native.predict_proba(X.astype(dtype[1:])))


def test_ctrl_c_rolls_back_a_history_whose_step_losses_were_thinned(digits, monkeypatch):
    """Past MAX_STEP_LOSSES the history drops every other step loss (training.record_steps): the
    rollback restores it whole, not by cutting lists."""
    from fastnet import training

    monkeypatch.setattr(training, "MAX_STEP_LOSSES", 4)  # 7 steps an epoch: thinned within each epoch
    X, _, y, _ = digits
    inc = small().partial_fit(X, y, classes=np.arange(10))
    with monkeypatch.context() as m:
        ctrl_c_in_epoch(m, 1, steps=5)
        with pytest.warns(UserWarning, match="Training interrupted by user"):
            inc.partial_fit(X, y)
    inc.partial_fit(X, y)
    with pytest.warns(ConvergenceWarning):
        whole = small(max_iter=2).fit(X, y)
    same_network(inc, whole)
    a, b = inc.model_._state.history, whole.model_._state.history
    assert (a.step_loss, a.steps, a.step_stride) == (b.step_loss, b.steps, b.step_stride) and a.step_stride > 1
