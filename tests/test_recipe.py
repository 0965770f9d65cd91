"""fastnet.recipe.Recipe: one typed recipe, validated from one table, named by each front door."""

import dataclasses
import json

import numpy as np
import pytest

from fastnet import recipe
from fastnet.recipe import FIELDS, OLD_DEFAULTS, PRESETS, Recipe, make


def test_the_defaults_are_the_fastnet_preset_and_the_seed_preset_is_the_blogs():
    assert Recipe() == Recipe.preset("fastnet")
    seed = Recipe.preset("seed")
    assert (seed.lr, seed.schedule, seed.standardize, seed.val_split, seed.beta1, seed.beta2) == \
        (5e-4, "constant", False, 0, 0.9, 0.999)
    assert Recipe.preset("seed", lr=1e-3).lr == 1e-3 and Recipe.preset("seed", lr=1e-3).beta1 == 0.9


def test_every_field_has_a_rule_and_every_rule_a_field():
    assert set(FIELDS) == {f.name for f in dataclasses.fields(Recipe)}
    assert set().union(*PRESETS.values()) <= set(FIELDS)


def test_a_recipe_is_frozen_and_replace_validates():
    r = Recipe()
    with pytest.raises(dataclasses.FrozenInstanceError):
        r.lr = 1.0
    assert r.replace(lr=1e-2).lr == 1e-2
    with pytest.raises(ValueError, match="lr must be a positive finite number"):
        r.replace(lr=-1.0)


def test_numpy_numbers_become_python_numbers_that_json_can_store():
    r = Recipe(layers=[np.int64(5), 3, np.int32(2)], epochs=np.int64(2), lr=np.float32(0.5), alpha=0,
               val_split=np.float64(0.25), standardize=np.bool_(False))
    assert r.layers == (5, 3, 2) and type(r.layers[0]) is int
    assert type(r.epochs) is int and type(r.lr) is float and type(r.alpha) is float
    assert type(r.val_split) is float and r.standardize is False
    assert Recipe.from_stored(json.loads(json.dumps(r.as_stored()))) == r


def bad_values():
    """(field, a value it refuses, words of the message): one or more a field."""
    return [("layers", (784,), "at least two positive layer sizes"), ("layers", (784, 0, 10), "positive"),
            ("layers", "784,128,10", "layer sizes"), ("epochs", 0, "an integer >= 1"), ("epochs", 1.5, "integer"),
            ("epochs", True, "integer"), ("batch_size", 0, ">= 1"), ("warmup", -1, ">= 0"), ("seed", -1, ">= 0"),
            ("lr", 0.0, "positive"), ("lr", float("inf"), "finite"), ("lr", "1e-3", "positive"),
            ("alpha", -1e-3, ">= 0"), ("alpha", float("nan"), ">= 0"), ("beta1", 1.0, "[0, 1)"),
            ("beta2", -0.1, "[0, 1)"), ("eps", 0.0, "positive"), ("eps", 1e-300, "smallest normal float32"),
            ("val_split", 1.0, "a fraction in [0, 1) or a count"), ("val_split", -1, "count >= 0"),
            ("schedule", "linear", "one of constant, cosine"), ("optimizer", "sgd", "one of "),
            ("activation", "gelu", "one of"), ("dtype", "float16", "one of float32, float64"),
            ("standardize", 1, "True or False")]


@pytest.mark.parametrize("field, value, words", bad_values())
def test_each_field_refuses_what_its_rule_refuses_naming_the_field(field, value, words):
    error = TypeError if field == "standardize" else ValueError
    with pytest.raises(error) as info:
        Recipe(**{field: value})
    message = str(info.value)
    assert message.startswith(f"{field} ") and words in message and "\n" not in message


@pytest.mark.parametrize("name, expected", [(lambda f: f"--{f.replace('_', '-')}", "--batch-size"),
                                            (lambda f: {"batch_size": "batch"}.get(f, f), "batch")])
def test_make_names_a_field_as_the_front_door_does(name, expected):
    with pytest.raises(ValueError) as info:
        make(name, batch_size=0)
    assert str(info.value).startswith(f"{expected} must be an integer >= 1") and type(info.value) is ValueError


def test_eps_is_checked_against_the_dtype_it_will_be_rounded_to():
    assert Recipe(eps=1e-300, dtype="float64").eps == 1e-300


def test_an_old_model_files_settings_read_with_the_defaults_of_their_time():
    old = {"layers": "784,64,10", "epochs": 3, "batch_size": 64, "lr": 1e-3, "schedule": "constant", "warmup": 0,
           "optimizer": "adam", "beta1": 0.9, "beta2": 0.999, "eps": 1e-8, "standardize": False, "val_split": 0,
           "seed": 1, "dtype": "float32", "save": "/tmp/m.npz", "quiet": True, "kernel_load_seconds": 0.2}
    r = Recipe.from_stored(old)
    assert r.layers == (784, 64, 10) and r.activation == OLD_DEFAULTS["activation"] and r.alpha == 0.0
    assert r.epochs == 3 and not hasattr(r, "save")


def test_a_stored_recipe_that_lacks_a_field_or_is_not_an_object_is_refused():
    stored = Recipe().as_stored()
    del stored["lr"]
    with pytest.raises(ValueError, match="lacks lr"):
        Recipe.from_stored(stored)
    with pytest.raises(TypeError, match="JSON object"):
        Recipe.from_stored([1, 2])


def test_threads_are_checked_apart_from_the_recipe():
    assert recipe.check_threads(None) is None and recipe.check_threads(np.int64(3)) == 3
    for bad in (0, recipe.MAX_THREADS + 1, 1.0, True):
        with pytest.raises(ValueError, match="threads must be an integer from 1"):
            recipe.check_threads(bad)
