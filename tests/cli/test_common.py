"""fastnet.cli, what every command shares: its argument types, one-line errors and their exit statuses
(run), the checks of output paths before any work, escaped terminal text, and StopRequest."""

import argparse
import errno
import io
import os
import signal
import sys

import pytest

from fastnet import cli
from fastnet.errors import DivergenceError, InputError


# --- argument types ---------------------------------------------------------------------------------------

@pytest.mark.parametrize("parse, text, value", [
    (cli.positive_int, "1", 1), (cli.positive_int, "250", 250),
    (cli.non_negative_int, "0", 0), (cli.non_negative_int, "7", 7),
    (cli.positive_float, "1e-3", 1e-3), (cli.positive_float, "2", 2.0),
    (cli.validation_split, "0", 0), (cli.validation_split, "3000", 3000), (cli.validation_split, "0.05", 0.05),
    (cli.validation_split, "0.0", 0.0),
])
def test_argument_types_take_what_they_name(parse, text, value):
    got = parse(text)
    assert got == value and type(got) is type(value)  # a count stays an int, a fraction a float


@pytest.mark.parametrize("parse, text, expected", [
    (cli.positive_int, "0", "expected a positive integer, got '0'"),
    (cli.positive_int, "-3", "expected a positive integer, got '-3'"),
    (cli.positive_int, "1.5", "expected a positive integer, got '1.5'"),
    (cli.positive_int, "two", "expected a positive integer, got 'two'"),
    (cli.non_negative_int, "-1", "expected an integer >= 0, got '-1'"),
    (cli.positive_float, "0", "expected a positive finite number, got '0'"),
    (cli.positive_float, "-1e-3", "expected a positive finite number, got '-1e-3'"),
    (cli.positive_float, "inf", "expected a positive finite number, got 'inf'"),
    (cli.positive_float, "nan", "expected a positive finite number, got 'nan'"),
    (cli.positive_float, "fast", "expected a positive number, got 'fast'"),
    (cli.validation_split, "-1", "expected a count >= 0 or a fraction in [0, 1), got '-1'"),
    (cli.validation_split, "1.0", "expected a count >= 0 or a fraction in [0, 1), got '1.0'"),
    (cli.validation_split, "-0.1", "expected a count >= 0 or a fraction in [0, 1), got '-0.1'"),
    (cli.validation_split, "nan", "expected a count >= 0 or a fraction in [0, 1), got 'nan'"),
    (cli.validation_split, "a tenth", "expected a count >= 0 or a fraction in [0, 1), got 'a tenth'"),
])
def test_argument_types_refuse_with_what_they_expected_and_what_they_got(parse, text, expected):
    with pytest.raises(argparse.ArgumentTypeError) as info:
        parse(text)
    assert str(info.value) == expected


def test_a_usage_error_is_an_input_error_naming_the_flag():
    parser = cli.ArgumentParser(prog="fastnet.x")
    parser.add_argument("--epochs", type=cli.positive_int, default=1)
    assert parser.parse_args(["--epochs", "3"]).epochs == 3
    with pytest.raises(InputError, match="--epochs.*expected a positive integer, got '0'"):
        parser.parse_args(["--epochs", "0"])
    with pytest.raises(InputError, match="unrecognized arguments: --batch 3"):
        parser.parse_args(["--batch", "3"])


# --- run: one line and an exit status -------------------------------------------------------------------------

def ran(main, capsys):
    """(exit status, stdout, stderr) of cli.run(main, [])."""
    with pytest.raises(SystemExit) as info:
        cli.run(main, [])
    out, err = capsys.readouterr()
    return info.value.code, out, err


def prints_and_returns(code):
    def main(argv):
        print("result")
        return code
    return main


def raises(exc):
    def main(argv):
        print("partial output")
        raise exc
    return main


@pytest.mark.parametrize("code, status", [(None, 0), (0, 0), (4, 4)])
def test_main_returning_a_status_exits_with_it(capsys, code, status):
    assert ran(prints_and_returns(code), capsys) == (status, "result\n", "")


@pytest.mark.parametrize("exc, status, line", [
    (InputError("no such file 'x.npz'"), 2, "error: no such file 'x.npz'\n"),
    (DivergenceError("training diverged at epoch 1"), 3, "error: training diverged at epoch 1\n"),
    (KeyboardInterrupt(), 130, "interrupted\n"),
    (cli.Terminated("terminated"), 130, "terminated\n"),
    (cli.Terminated("hung up"), 130, "hung up\n"),
])
def test_errors_and_stops_are_one_line_and_their_status(capsys, exc, status, line):
    """What main printed before is kept (flushed), then one line on stderr: no traceback."""
    assert ran(raises(exc), capsys) == (status, "partial output\n", line)


def wrapped(stop):
    """What Python 3.11 makes of a KeyboardInterrupt raised inside a class body's __set_name__ (a
    Ctrl-C while Numba's modules import): a RuntimeError caused by it."""
    class Descriptor:
        def __set_name__(self, owner, name):
            raise stop

    try:
        type("Context", (), {"attribute": Descriptor()})
    except BaseException as exc:  # RuntimeError on 3.11, the stop itself where Python no longer wraps it
        return exc
    raise AssertionError("__set_name__ was not called")


@pytest.mark.parametrize("stop, line", [(KeyboardInterrupt(), "interrupted\n"),
                                        (cli.Terminated("terminated"), "terminated\n")])
def test_a_stop_wrapped_in_another_exception_is_still_a_stop(capsys, stop, line):
    """A stop signal that surfaces as the cause of another exception exits 130 with its one line,
    not a traceback and status 1 (the hostile sweep's signal_sigint_at_start_up, 1 run in 30)."""
    exc = wrapped(stop)
    assert cli._stop_behind(exc) is stop
    assert ran(raises(exc), capsys) == (130, "partial output\n", line)
    chained = ValueError("while stopping")
    chained.__context__ = stop
    assert ran(raises(chained), capsys) == (130, "partial output\n", line)


def test_a_stop_that_an_import_turned_into_another_error_is_still_a_stop(capsys):
    """A C extension's import may print the KeyboardInterrupt raised in it and fail with an ImportError
    of its own, which the backend turns into an InputError: the run still ends as stopped."""
    def main(argv):
        try:
            cli._interrupt(signal.SIGINT, None)
        except KeyboardInterrupt:
            pass  # what the extension does: the error it raises instead has no cause
        raise InputError("the numba backend is unavailable (numba._devicearray failed to import)")
    assert ran(main, capsys) == (130, "", "interrupted\n")


def test_an_error_with_no_stop_behind_it_is_not_taken_for_one(capsys):
    with pytest.raises(RuntimeError, match="a bug"):
        cli.run(raises(RuntimeError("a bug")), [])
    capsys.readouterr()


def test_a_closed_pipe_exits_1_without_a_message(capsys):
    assert ran(raises(BrokenPipeError()), capsys)[::2] == (1, "")


class FullDevice(io.TextIOBase):
    """A standard output on a full disk: every write fails with ENOSPC; it has no file descriptor."""

    def write(self, text):
        raise OSError(errno.ENOSPC, "No space left on device")

    def fileno(self):
        raise io.UnsupportedOperation("fileno")


def test_standard_output_that_cannot_be_written_is_one_line_and_status_2(monkeypatch, capsys):
    monkeypatch.setattr(sys, "stdout", FullDevice())
    with pytest.raises(SystemExit) as info:
        cli.run(prints_and_returns(0), [])
    assert info.value.code == 2
    assert capsys.readouterr().err == "error: cannot write to standard output (No space left on device)\n"
    assert isinstance(sys.stdout, FullDevice)  # run put the caller's stream back


def test_another_os_error_is_not_taken_for_standard_output(capsys):
    """An OSError that is not standard output's is a bug to show, not a one-line message."""
    with pytest.raises(PermissionError):
        cli.run(raises(PermissionError(errno.EACCES, "denied")), [])


def test_run_puts_the_callers_signal_handlers_back():
    def mine(signum, frame):
        pass

    previous = signal.signal(signal.SIGTERM, mine)
    try:
        with pytest.raises(SystemExit):
            cli.run(lambda argv: signal.getsignal(signal.SIGTERM) is mine and 5, [])
        assert signal.getsignal(signal.SIGTERM) is mine
    finally:
        signal.signal(signal.SIGTERM, previous)


# --- output paths, checked before any work ----------------------------------------------------------------------

def test_save_and_metrics_json_may_not_share_a_file(tmp_path):
    same = str(tmp_path / "out.npz")
    with pytest.raises(InputError, match="--save and --metrics-json name the same file"):
        cli.check_outputs({"save": same, "metrics_json": same})
    cli.check_outputs({"save": same, "metrics_json": str(tmp_path / "m.json")})
    assert os.listdir(tmp_path) == []  # probed, nothing made


def test_metrics_json_may_not_overwrite_the_checkpoint_being_resumed(tmp_path):
    checkpoint = tmp_path / "run.npz"
    checkpoint.write_bytes(b"model")
    with pytest.raises(InputError, match="--metrics-json would overwrite the checkpoint"):
        cli.check_outputs({"resume": str(checkpoint), "metrics_json": str(checkpoint)})
    assert checkpoint.read_bytes() == b"model"


def test_an_output_in_a_missing_folder_names_its_flag(tmp_path):
    with pytest.raises(InputError, match="--metrics-json"):
        cli.check_outputs({"metrics_json": str(tmp_path / "missing" / "m.json")})


def test_plot_folder_must_be_a_folder_or_makeable(tmp_path):
    pytest.importorskip("matplotlib")
    a_file = tmp_path / "file"
    a_file.write_text("x")
    with pytest.raises(InputError, match="is not a directory"):
        cli.check_plot_folder(str(a_file), ["a.png"])
    with pytest.raises(InputError, match="does not exist"):
        cli.check_plot_folder(str(tmp_path / "missing" / "plots"), ["a.png"])
    cli.check_plot_folder(str(tmp_path / "missing" / "plots"), ["a.png"], parents=True)
    cli.check_plot_folder(str(tmp_path / "plots"), ["a.png"])
    assert sorted(os.listdir(tmp_path)) == ["file"]  # checked, not made


def test_plot_folder_may_not_hold_another_output(tmp_path):
    pytest.importorskip("matplotlib")
    plots = tmp_path / "plots"
    plots.mkdir()
    with pytest.raises(InputError, match="--plot would overwrite --save"):
        cli.check_plot_folder(str(plots), ["a.png"], {"--save": str(plots / "a.png")})
    with pytest.raises(InputError, match="--plot and --save name the same path"):
        cli.check_plot_folder(str(plots), ["a.png"], {"--save": str(plots)})


# --- text and stops ---------------------------------------------------------------------------------------------

@pytest.mark.parametrize("text, shown", [
    ("shirt", "shirt"),
    ("ünïcode ☃", "ünïcode ☃"),
    ("\x1b[31mred", "\\x1b[31mred"),
    ("a\nb\tc\x07", "a\\nb\\tc\\x07"),
    (12, "12"),
])
def test_printable_escapes_control_characters_only(text, shown):
    assert cli.printable(text) == shown


def test_a_stop_request_takes_the_first_signal_as_a_request_and_the_second_as_an_abort():
    before = signal.getsignal(signal.SIGTERM)
    with cli.StopRequest() as stop:
        assert not stop()
        signal.raise_signal(signal.SIGTERM)
        assert stop() and stop.name == "terminated"
        stop.hold = True
        signal.raise_signal(signal.SIGINT)  # held: ignored
        stop.hold = False
        with pytest.raises(KeyboardInterrupt):
            signal.raise_signal(signal.SIGINT)
    assert signal.getsignal(signal.SIGTERM) is before
