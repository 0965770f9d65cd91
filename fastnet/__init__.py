"""fastnet: a from-scratch MLP trainer for IDX image data sets such as Fashion-MNIST."""

import os as _os
import signal as _signal
import sys as _sys

__version__ = "0.1.0"


def _stopped_while_starting(signum, frame):
    """Ctrl-C or SIGTERM while a command is still importing its modules: nothing is open or half
    written yet, so exit 130 with one line (not a KeyboardInterrupt traceback out of an import).
    os.write: a signal may land while Python is inside sys.stderr's own buffer."""
    try:
        _os.write(2, {_signal.SIGINT: b"interrupted\n", _signal.SIGTERM: b"terminated\n"}.get(signum, b"hung up\n"))
    except OSError:
        pass
    raise SystemExit(130)


if _sys.argv[:1] == ["-m"]:  # `python -m fastnet.<command>`; fastnet.cli.run takes over once it starts
    for _sig in (_signal.SIGINT, _signal.SIGTERM, _signal.SIGHUP):
        if _signal.getsignal(_sig) is not _signal.SIG_IGN:  # nohup, a background job: leave it ignored
            _signal.signal(_sig, _stopped_while_starting)
