"""What every fastnet command shares: argument checks and turning errors into one line and an exit status."""

import argparse
import os
import signal
import sys
import threading
import time

from .errors import DivergenceError, InputError
from .files import check_destination


class ArgumentParser(argparse.ArgumentParser):
    """argparse, but a usage error is one line on stderr and exit status 2 (no usage dump)."""

    def error(self, message):
        raise InputError(message)


def _int_at_least(least, what):
    """An argparse type: an integer >= least, else the one-line message 'expected {what}'."""

    def parse(text):
        try:
            value = int(text)
        except ValueError:
            value = least - 1
        if value < least:
            raise argparse.ArgumentTypeError(f"expected {what}, got {text!r}")
        return value

    return parse


positive_int = _int_at_least(1, "a positive integer")
non_negative_int = _int_at_least(0, "an integer >= 0")


def positive_float(text):
    """argparse type: a finite float > 0."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive number, got {text!r}") from None
    if not (value > 0 and value != float("inf")):
        raise argparse.ArgumentTypeError(f"expected a positive finite number, got {text!r}")
    return value


# The signals that stop a command: Ctrl-C, kill, and the terminal going away. What each is called.
STOP_SIGNALS = {signal.SIGINT: "interrupted", signal.SIGTERM: "terminated", signal.SIGHUP: "hung up"}


class Terminated(KeyboardInterrupt):
    """SIGTERM or SIGHUP outside a StopRequest: handled as Ctrl-C is (files cleaned up, exit 130)."""


# While run() runs: "name" set once a StopRequest has granted a stop, "raised" the stop a handler
# raised (whatever error it turns into, the run ends as stopped), "decided" once main has returned
# or raised (the exit status is decided: a further signal would only add a second line).
_STOPPING = {}


def _interrupt(signum, frame):
    """run()'s handler of STOP_SIGNALS outside a StopRequest. After a StopRequest granted a stop
    the command is ending at its safe point, and once main is over its status is decided: a
    further signal is ignored."""
    if _STOPPING.get("name") or _STOPPING.get("decided"):
        return
    stop = KeyboardInterrupt() if signum == signal.SIGINT else Terminated(STOP_SIGNALS[signum])
    _STOPPING["raised"] = stop
    raise stop


def run(main, argv=None):
    """Call main(argv) and exit with its status. InputError and DivergenceError become one line on
    stderr and their status; Ctrl-C, SIGTERM and SIGHUP exit 130; standard output that cannot be
    written (a full disk, a closed pipe) is one line and status 2, never a traceback. Text that
    the terminal's encoding cannot show is written as escapes.

    The signal handlers in place before are put back after, except fastnet's start-up handler
    (`python -m fastnet.<command>`): there the process is exiting with its status decided, and the
    stop signals are ignored from then on, so that a Ctrl-C held or repeated while the interpreter
    shuts down (its atexit callbacks, Numba's threads) changes nothing and prints nothing."""
    from . import _stopped_while_starting

    handlers = {}
    _STOPPING.clear()
    for sig in STOP_SIGNALS:
        if signal.getsignal(sig) is not signal.SIG_IGN and threading.current_thread() is threading.main_thread():
            handlers[sig] = signal.signal(sig, _interrupt)
    try:
        _run(main, argv)
    finally:
        for sig, handler in handlers.items():
            signal.signal(sig, signal.SIG_IGN if handler is _stopped_while_starting else handler)


def _run(main, argv):
    if sys.stdout is None:  # started with standard output closed (>&-): say so before any work
        print("error: standard output is closed", file=sys.stderr)
        sys.exit(2)
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.reconfigure(errors="backslashreplace")
        except (AttributeError, ValueError):
            pass
    stdout = sys.stdout = _Watched(sys.stdout)
    try:
        try:
            code = main(argv)
        finally:
            _STOPPING["decided"] = True
        sys.stdout.flush()
    except KeyboardInterrupt as exc:
        code = _stopped(exc)
    except Exception as exc:
        code = _ended(exc, stdout)
        if code is None:
            raise
    finally:
        if sys.stdout is stdout:
            sys.stdout = stdout.stream
    sys.exit(code or 0)


def _ended(exc, stdout):
    """The exit status (its line printed) of main's error exc, or None for an error of no kind
    known here (a bug: its traceback is wanted). An error a stop caused is the stop."""
    stop = _stop_behind(exc)
    if stop is not None:
        return _stopped(stop)
    if isinstance(exc, (InputError, DivergenceError)):
        return _fail(f"error: {exc}", exc.exit_code)
    if isinstance(exc, BrokenPipeError):
        return _fail(None, 1)
    if isinstance(exc, OSError) and stdout.failed is not None:
        return _fail(f"error: cannot write to standard output ({exc.strerror or exc})", 2)
    return None


def _stop_behind(exc):
    """The stop (KeyboardInterrupt, Terminated) behind exc, if any: one in its chain of causes, or
    one that _interrupt raised before it. Code that a stop interrupts may turn it into another
    error: Python 3.11 wraps one raised inside a class body's __set_name__ in RuntimeError, and a C
    extension's import may print it and fail with ImportError (a signal while Numba imports)."""
    seen = set()
    while exc is not None and id(exc) not in seen:
        if isinstance(exc, KeyboardInterrupt):
            return exc
        seen.add(id(exc))
        exc = exc.__cause__ or exc.__context__
    return _STOPPING.get("raised")


def _stopped(stop):
    """The one line and status 130 of a stop (KeyboardInterrupt or Terminated)."""
    return _fail(str(stop) if isinstance(stop, Terminated) else "interrupted", 130)


class _Watched:
    """A stream that remembers the OSError a write or flush raised (stdout on a full disk, say),
    so run() tells a failing standard output from other OSErrors; everything else is the stream's."""

    def __init__(self, stream):
        self.stream, self.failed = stream, None

    def write(self, text):
        try:
            return self.stream.write(text)
        except OSError as exc:
            self.failed = exc
            raise

    def flush(self):
        try:
            return self.stream.flush()
        except OSError as exc:
            self.failed = exc
            raise

    def __getattr__(self, name):
        return getattr(self.stream, name)


def _fail(message, code):
    """Flush what stdout holds (or, when it cannot take it, point it at /dev/null so exiting does
    not fail again), print message to stderr and return code."""
    try:
        sys.stdout.flush()
    except (OSError, ValueError):
        try:
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        except (OSError, ValueError):
            pass
    if message:
        try:
            print(message, file=sys.stderr)
        except (OSError, ValueError):  # no terminal left (SIGHUP): the status still tells
            pass
    return code


def validation_split(text):
    """argparse type for --val-split: a count of images ("3000") or a fraction in [0, 1) ("0.05")."""
    try:
        count = int(text)
    except ValueError:
        count = None
    if count is not None:
        if count < 0:
            raise argparse.ArgumentTypeError(f"expected a count >= 0 or a fraction in [0, 1), got {text!r}")
        return count
    try:
        value = float(text)
    except ValueError:
        value = float("nan")
    if not 0 <= value < 1:
        raise argparse.ArgumentTypeError(f"expected a count >= 0 or a fraction in [0, 1), got {text!r}")
    return value


def check_outputs(s):
    """Before any work: every output path can be written, and no two outputs share a path.

    --save and --metrics-json must be (or become) regular files in existing, writable directories;
    --plot a directory (check_plot_folder); none of them the same file as another or as the
    checkpoint being resumed.
    """
    files = {}
    for key in ("save", "metrics_json"):
        if s.get(key) is not None:
            files[key] = os.path.realpath(check_destination(s[key], f"--{key.replace('_', '-')}"))
    if s.get("plot") is not None:
        from .plots import TRAINING_PLOTS

        check_plot_folder(s["plot"], TRAINING_PLOTS, {f"--{k.replace('_', '-')}": v for k, v in files.items()})
    if "save" in files and files["save"] == files.get("metrics_json"):
        raise InputError(f"--save and --metrics-json name the same file {s['save']}; give each its own")
    if s.get("resume") and "metrics_json" in files and files["metrics_json"] == os.path.realpath(s["resume"]):
        raise InputError("--metrics-json would overwrite the checkpoint being resumed")


def check_plot_folder(folder, names, others=None, parents=False):
    """Before any work: --plot FOLDER is a directory, or can be made as one in an existing directory
    (with parents: in the nearest existing one, its missing parents too), where the PNG files `names`
    can be written: probed as --save is (fastnet.files.check_destination: /proc, a read-only mount,
    an unwritable folder are refused), without making anything. others: {flag: real path} of the
    command's other output files, none of which may be the folder or a plot.
    """
    if not folder or (os.path.lexists(folder) and not os.path.isdir(folder)):
        raise InputError(f"--plot: {folder!r} is not a directory")
    first = os.path.abspath(folder)  # the first folder to make, in parent
    parent = os.path.dirname(first)
    while parents and not os.path.lexists(parent) and parent != os.path.dirname(parent):
        first, parent = parent, os.path.dirname(parent)
    if not os.path.isdir(folder) and not os.path.isdir(parent):
        raise InputError(f"--plot: {parent} is not a directory" if os.path.lexists(parent)
                         else f"--plot: directory {parent} does not exist")
    from .plots import require_matplotlib

    require_matplotlib()
    if os.path.isdir(folder):  # each plot can replace what is there; the folder is probed once
        for i, name in enumerate(names):
            check_destination(os.path.join(folder, name), "--plot", probe=i == 0)
    else:  # the folder can be made: where it starts is probed
        check_destination(first, "--plot")
    real = os.path.realpath(folder)
    for flag, path in (others or {}).items():
        if path == real:
            raise InputError(f"--plot and {flag} name the same path {folder}; give each its own")
        for name in names:
            if path == os.path.join(real, name):
                raise InputError(f"--plot would overwrite {flag} {path} with its {name}; give each its own")


def printable(text):
    """text with control characters (terminal escapes among them) shown as escapes, not obeyed."""
    text = str(text)
    if text.isprintable():
        return text
    return "".join(c if c.isprintable() else c.encode("unicode_escape").decode("ascii") for c in text)


def seconds_since_launch():
    """Wall seconds since this process started (read from /proc on Linux; elsewhere since the
    first call), so a command can report its time to first batch including Python's imports."""
    try:
        with open("/proc/self/stat") as f:
            start_ticks = int(f.read().rsplit(")", 1)[1].split()[19])
        with open("/proc/uptime") as f:
            uptime = float(f.read().split()[0])
        return max(uptime - start_ticks / os.sysconf("SC_CLK_TCK"), 0.0)
    except (OSError, ValueError, IndexError):
        now = time.monotonic()
        _FIRST_CALL.setdefault("t", now)
        return now - _FIRST_CALL["t"]


_FIRST_CALL = {}


class StopRequest:
    """While active, the first SIGINT (Ctrl-C), SIGTERM or SIGHUP asks the run to stop at the next
    safe point instead of killing it; a second one aborts at once (KeyboardInterrupt). A signal
    the process ignores (SIGHUP under nohup, SIGINT in a background job) stays ignored.

    Calling the object tells whether a stop was asked for; `name` says which signal asked. While
    `hold` is set, a second signal is only ignored (where an exception cannot be raised safely).
    """

    NAMES = STOP_SIGNALS

    def __init__(self):
        self.name = None
        self.hold = False
        self.previous = {}

    def __enter__(self):
        for sig in self.NAMES:
            if signal.getsignal(sig) is not signal.SIG_IGN:
                self.previous[sig] = signal.signal(sig, self._handle)
        return self

    def __exit__(self, *exc):
        for sig, handler in self.previous.items():
            signal.signal(sig, handler)

    def _handle(self, signum, frame):
        if self.name is not None:
            if self.hold:
                return
            stop = _STOPPING["raised"] = KeyboardInterrupt()
            raise stop
        self.name = _STOPPING["name"] = self.NAMES[signum]

    def __call__(self):
        return self.name is not None
