"""The errors fastnet reports to a person as one line, with the exit status each one means."""


class InputError(Exception):
    """Bad input (a data file, a flag, a model file): one line on stderr, exit status 2."""

    exit_code = 2


class DivergenceError(Exception):
    """Training produced a non-finite loss or parameter: one line on stderr, exit status 3."""

    exit_code = 3
