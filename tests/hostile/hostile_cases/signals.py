"""Hostile families of issue 21's T1, S1-S3 and O1: the core-share registry prepared by another user,
signals timed across a whole run (start-up, compile, epoch ends, saves, the report, the exit), and
--plot folders that cannot be written.

    python tests/hostile/hostile_sweep.py -k reg_     # the registry (T1)
    python tests/hostile/hostile_sweep.py -k sig_     # signals (S1-S3)
    python tests/hostile/hostile_sweep.py -k plotdir_ # --plot checked before the first step (O1)

The registry cases run fastnet.train through a small runner module written into the case's folder
(regrun.py): it points the registry's runtime directory at the case's own shm/ (never the
machine's /dev/shm, which other runs use) and, like an attacker who guessed the process id, plants
an entry named by the run's own process id before the run starts. The sweep's snapshot then shows
that nothing outside the run's own file was touched.
"""

import os
import signal
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[3]
IS_ROOT = os.geteuid() == 0
UID = os.getuid()
FOLDER = f"shm/fastnet-{UID}"
DEAD = tuple(str(4194305 + i) for i in range(5))  # above Linux's largest pid_max: never a live process

RUNNER = '''"""fastnet.train with the core-share registry in ./shm, an entry planted under this run's own id."""
import atexit
import os

from fastnet import cli, threads, train

threads._runtime_dir = lambda: os.path.join(os.getcwd(), "shm")
mine = os.path.join(os.getcwd(), "shm", f"fastnet-{os.getuid()}", str(os.getpid()))
victim = os.path.join(os.getcwd(), "victim.txt")
kind = os.environ.get("PLANT", "")
planted = None
try:
    if kind == "link":
        os.symlink(victim, mine)
    elif kind == "hardlink":
        os.link(victim, mine)
    elif kind == "fifo":
        os.mkfifo(mine)
    elif kind == "dir":
        os.mkdir(mine)
    if kind:
        planted = os.lstat(mine)
except OSError:  # no folder to plant in (a file, a dangling link): nothing planted
    pass


def unplant():
    """Remove what was planted; fastnet's own file must be gone already."""
    try:
        now = os.lstat(mine)
    except OSError:  # not there, or no folder to be in
        return
    if planted is not None and (now.st_ino, now.st_dev) == (planted.st_ino, planted.st_dev):
        (os.rmdir if kind == "dir" else os.unlink)(mine)
    else:
        os.write(2, b"regrun: the run left its registry file behind\\n")


atexit.register(unplant)
cli.run(train.main)
'''


# In the FAST subset that tests/hostile/test_sweep.py runs (make test): a few cheap ones of each family.
FAST = {"reg_own_folder_link_as_our_pid", "reg_mode_0777_link_as_our_pid", "reg_folder_link_to_victim_dir",
        "sig_sigint_one_step_epochs_at_2", "sig_sigint_burst_while_exiting", "plotdir_proc_new",
        "plotdir_same_as_save"}


def add(case, sweep):
    def fast_case(name, *args, **kw):
        case(name, *args, fast=name in FAST, **kw)

    registry(fast_case, sweep)
    signals(fast_case, sweep)
    plot_folders(fast_case, sweep)


# ----------------------------------------------------------------- the registry and other users (T1)

def prepared(sweep, folder="dir", mode=0o700, owner=None, dead=(), dead_kind="link"):
    """Setup: regrun.py, victim.txt, and shm/fastnet-<uid> as `folder` says: "dir" (with mode and
    owner), "absent", "no-runtime" (no shm/ at all), "file", "fifo", "dangling", "loop", "dev-null",
    "victim-dir" (a link to victimdir/, which holds files named like dead processes) or "own-dir"
    (a link to a private folder of ours). dead: names of dead processes planted in it (links to
    victim.txt, or directories)."""
    def setup(ws):
        sweep.put(ws, "regrun.py", RUNNER.encode())
        sweep.put(ws, "victim.txt", b"precious\n")
        shm = ws / "shm"
        if folder == "no-runtime":
            return
        shm.mkdir()
        path = ws / FOLDER
        if folder == "dir":
            path.mkdir()
        elif folder == "file":
            path.write_bytes(b"not a folder\n")
        elif folder == "fifo":
            os.mkfifo(path)
        elif folder == "dangling":
            path.symlink_to(ws / "nowhere")
        elif folder == "loop":
            path.symlink_to(path)
        elif folder == "dev-null":
            path.symlink_to("/dev/null")
        elif folder in ("victim-dir", "own-dir"):
            target = ws / ("victimdir" if folder == "victim-dir" else "private")
            target.mkdir(mode=0o700)
            for name in DEAD:
                (target / name).write_bytes(b"someone's file\n")
            path.symlink_to(target)
        for name in dead:
            if dead_kind == "dir":
                (path / name).mkdir()
            else:
                (path / name).symlink_to(ws / "victim.txt")
        if folder == "dir":
            path.chmod(mode)
            if owner is not None:
                os.chown(path, owner, owner)
    return setup


def registry(case, sweep):
    train = ["regrun", *sweep.TRAIN[1:]]
    cleaning = [*train, "--backend", "numba", "--threads", "2"]  # a run that shares: lists and cleans the folder
    for name, argv, setup, env, kw in [
        ("own_folder", train, prepared(sweep), {}, {}),
        ("folder_made_by_the_run", train, prepared(sweep, "absent"), {}, {"writes": (FOLDER,)}),
        ("no_runtime_directory", train, prepared(sweep, "no-runtime"), {}, {}),
        ("own_folder_link_as_our_pid", train, prepared(sweep), {"PLANT": "link"}, {}),
        ("own_folder_hardlink_as_our_pid", train, prepared(sweep), {"PLANT": "hardlink"}, {}),
        ("own_folder_fifo_as_our_pid", train, prepared(sweep), {"PLANT": "fifo"}, {"timeout": 30}),
        ("own_folder_directory_as_our_pid", train, prepared(sweep), {"PLANT": "dir"}, {}),
        *[(f"mode_{mode:04o}_link_as_our_pid", train, prepared(sweep, mode=mode, dead=DEAD), {"PLANT": "link"}, {})
          for mode in (0o777, 0o1777, 0o775, 0o770, 0o757, 0o722, 0o702)],
        ("folder_link_to_victim_dir", train, prepared(sweep, "victim-dir"), {"PLANT": "link"}, {}),
        ("folder_link_to_own_private_dir", train, prepared(sweep, "own-dir"), {"PLANT": "link"}, {}),
        ("folder_dangling_link", train, prepared(sweep, "dangling"), {}, {}),
        ("folder_link_loop", train, prepared(sweep, "loop"), {}, {}),
        ("folder_link_to_dev_null", train, prepared(sweep, "dev-null"), {}, {}),
        ("folder_is_a_file", train, prepared(sweep, "file"), {}, {}),
        ("folder_is_a_fifo", train, prepared(sweep, "fifo"), {}, {"timeout": 30}),
        # the cleanup of dead processes' files: only in a folder of our own, never through a link
        ("cleanup_own_folder_removes_dead_links", cleaning, prepared(sweep, dead=DEAD), {"PLANT": "link"},
         {"writes": tuple(f"{FOLDER}/{n}" for n in DEAD)}),
        ("cleanup_own_folder_many_dead_links", cleaning, prepared(sweep, dead=tuple(str(4194400 + i)
                                                                                   for i in range(300))), {},
         {"writes": tuple(f"{FOLDER}/{4194400 + i}" for i in range(300))}),
        ("cleanup_own_folder_keeps_dead_directories", cleaning, prepared(sweep, dead=DEAD, dead_kind="dir"), {}, {}),
        ("cleanup_never_in_a_0777_folder", cleaning, prepared(sweep, mode=0o777, dead=DEAD), {"PLANT": "link"}, {}),
        ("cleanup_never_through_a_folder_link", cleaning, prepared(sweep, "victim-dir"), {"PLANT": "link"}, {}),
    ]:
        # refused folders: one note line on stderr (the sweep allows notes), and the run trains as asked
        case(f"reg_{name}", "registry", argv, 0, setup=setup, env=env, **kw)
    if IS_ROOT:  # a folder made first by another user (root can give one away)
        for mode in (0o700, 0o755, 0o1777):
            case(f"reg_other_users_folder_{mode:04o}_link_as_our_pid", "registry", train, 0,
                 setup=prepared(sweep, mode=mode, owner=12345, dead=DEAD), env={"PLANT": "link"})
        case("reg_cleanup_never_in_another_users_folder", "registry", cleaning, 0,
             setup=prepared(sweep, owner=12345, dead=DEAD), env={"PLANT": "link"})


# ----------------------------------------------------------------- signals across a whole run (S1-S3)

def complete_or_absent(sweep, rel):
    """Check: ws/rel is a complete model file, or was never written."""
    def check(ws):
        return sweep.loads_as_model(rel)(ws) if (ws / rel).exists() else None
    return check


def resumes(rel="m.npz", between_epochs=False):
    """Check: ws/rel is a checkpoint that --resume continues (exit 0), stopped between two epochs
    when between_epochs (a stop that came with an epoch's last step)."""
    def check(ws):
        sys.path.insert(0, str(ROOT))
        from fastnet import checkpoint
        from fastnet.optim import OPTIMIZERS

        try:
            state, _, _ = checkpoint.load_state(str(ws / rel), OPTIMIZERS)
        except Exception as exc:  # noqa: BLE001 - any failure is the finding
            return f"{rel} is not a complete checkpoint: {exc}"
        if between_epochs and state.batch:
            return f"{rel} stopped at batch {state.batch} of an epoch of one step"
        env = dict(os.environ, PYTHONPATH=str(ROOT), FASTNET_CACHE_DIR=str(ws / "cache"), OMP_NUM_THREADS="1")
        proc = subprocess.run([sys.executable, "-m", "fastnet.train", "--resume", str(ws / rel), "--epochs",
                               str(state.epoch + 1), "--data-dir", str(ws / "data"), "--backend", "numpy",
                               "--threads", "1", "--quiet"], cwd=ws, env=env, capture_output=True, text=True,
                              timeout=60)
        if proc.returncode != 0:
            return f"--resume {rel} exits {proc.returncode}: {proc.stderr.strip()[:150]}"
        return None
    return check


def plots_whole_or_absent(rel="out"):
    """Check: the --plot folder holds both pictures, or is not there (never empty or half-filled)."""
    def check(ws):
        folder = ws / rel
        if not folder.exists():
            return None
        found = sorted(p.name for p in folder.iterdir())
        if found != ["confusion_matrix.png", "learning_curves.png"]:
            return f"{rel} holds {found}"
        return None
    return check


def signals(case, sweep):
    loud, forever = sweep.LOUD, sweep.FOREVER
    saving = [*loud, *forever, "--save", "m.npz"]
    names = {signal.SIGINT: "sigint", signal.SIGTERM: "sigterm", signal.SIGHUP: "sighup"}
    # timed from the start: importing, loading the data, training
    for sig in names:
        for after in (0.15, 0.3, 0.5, 0.9):
            case(f"sig_{names[sig]}_at_{int(after * 1000)}ms", "signals", saving, 130, signals=((sig, after),),
                 writes=("m.npz",), check=complete_or_absent(sweep, "m.npz"))
    # epoch ends: epochs of one step (every stop comes with an epoch's last step), and of three
    one_step = [*saving, "--batch-size", "1000"]
    for sig, line in ((signal.SIGINT, "epoch 1/"), (signal.SIGINT, "epoch 2/"), (signal.SIGINT, "epoch 4/"),
                      (signal.SIGTERM, "epoch 2/"), (signal.SIGHUP, "epoch 3/")):
        case(f"sig_{names[sig]}_one_step_epochs_at_{line.split()[1][:-1]}", "signals", one_step, 130,
             signals=((sig, line),), writes=("m.npz",), check=resumes(between_epochs=True))
    for line in ("epoch 1/", "epoch 3/"):
        case(f"sig_sigint_three_step_epochs_at_{line.split()[1][:-1]}", "signals", [*saving, "--batch-size", "100"],
             130, signals=((signal.SIGINT, line),), writes=("m.npz",), check=resumes())
    # while a checkpoint is saved (--checkpoint-every 1 saves right after each epoch line)
    every = [*saving, "--checkpoint-every", "1"]
    for name, sigs in [
        ("sigint", ((signal.SIGINT, "epoch 2/"),)),
        ("double_sigint", ((signal.SIGINT, "epoch 2/"), (signal.SIGINT, 0.001))),
        ("sigterm_then_sigint", ((signal.SIGTERM, "epoch 2/"), (signal.SIGINT, 0.002))),
        ("triple_sighup", ((signal.SIGHUP, "epoch 3/"), (signal.SIGHUP, 0.001), (signal.SIGHUP, 0.001))),
    ]:
        case(f"sig_{name}_while_saving_a_checkpoint", "signals", every, 130, signals=sigs, writes=("m.npz",),
             check=resumes())
    # the report: metrics, plots (a second signal aborts the plots: no empty or half-filled folder)
    report = [*loud, "--save", "m.npz", "--metrics-json", "m.json", "--plot", "out"]
    out = ("m.npz", "m.json", "out", "out/learning_curves.png", "out/confusion_matrix.png")
    for name, sigs in [
        ("sigint", ((signal.SIGINT, "test accuracy"),)),
        ("double_sigint", ((signal.SIGINT, "test accuracy"), (signal.SIGINT, 0.3))),
        ("sigterm", ((signal.SIGTERM, "test accuracy"),)),
    ]:
        case(f"sig_{name}_during_the_report", "signals", report, {0, 130}, signals=sigs, writes=out,
             check=plots_whole_or_absent())
    # the exit: a key held, or pressed again and again, while a finished run exits (S3)
    for name, sig, argv, writes in [
        ("sigint", signal.SIGINT, [*loud, "--save", "m.npz"], ("m.npz",)),
        ("sigterm", signal.SIGTERM, [*loud, "--save", "m.npz"], ("m.npz",)),
        ("sighup", signal.SIGHUP, [*loud, "--save", "m.npz"], ("m.npz",)),
        ("sigint_no_save", signal.SIGINT, loud, ()),
        ("sigint_metrics", signal.SIGINT, [*loud, "--metrics-json", "m.json"], ("m.json",)),
    ]:
        burst = ((sig, "test accuracy"),) + ((sig, 0.002),) * 60
        case(f"sig_{name}_burst_while_exiting", "signals", argv, {0, 130}, signals=burst, writes=writes,
             check=complete_or_absent(sweep, "m.npz"))
    mixed = ((signal.SIGINT, "test accuracy"),) + ((signal.SIGTERM, 0.002), (signal.SIGHUP, 0.002),
                                                   (signal.SIGINT, 0.002)) * 20
    case("sig_mixed_burst_while_exiting", "signals", [*loud, "--save", "m.npz"], {0, 130}, signals=mixed,
         writes=("m.npz",), check=complete_or_absent(sweep, "m.npz"))
    # bursts from the start-up on, through an error's exit (exit 2 decided: later signals change nothing)
    for sig in names:
        case(f"sig_{names[sig]}_burst_from_start_up", "signals", saving, 130,
             signals=((sig, 0.15),) + ((sig, 0.003),) * 150, writes=("m.npz",),
             check=complete_or_absent(sweep, "m.npz"))
    case("sig_sigint_burst_through_an_error", "signals", [*loud, "--layers", "65,8,4"], {2, 130},
         signals=((signal.SIGINT, 0.3),) + ((signal.SIGINT, 0.003),) * 200)
    # ignored signals stay ignored; the others still stop the run
    case("sig_sigterm_while_sigint_is_ignored", "signals", saving, 130, signals=((signal.SIGTERM, "epoch 2/"),),
         ignored=(signal.SIGINT,), writes=("m.npz",), check=resumes())
    case("sig_sighup_burst_under_nohup", "signals", [*loud, "--epochs", "2", "--save", "m.npz"], 0,
         signals=((signal.SIGHUP, "epoch 1/"),) + ((signal.SIGHUP, 0.002),) * 30, ignored=(signal.SIGHUP,),
         writes=("m.npz",), check=sweep.loads_as_model("m.npz", 2))
    # while the kernels compile (an empty Numba cache: slow, so only a few)
    compile_env = {"NUMBA_CACHE_DIR": "{ws}/cache/numba", "FASTNET_NO_PREBUILT": "1"}  # nor kernels shipped prebuilt
    numba = [*[a if a != "numpy" else "numba" for a in loud], *forever]
    # (SIGWINCH, ignored by default, only marks the run's first line: the stops come 0.5 s into the compile)
    case("sig_sigint_while_compiling", "signals", [*numba, "--save", "m.npz"], 130, env=compile_env,
         signals=((signal.SIGWINCH, "fastnet:"), (signal.SIGINT, 0.5)), timeout=240)
    case("sig_sigterm_then_sigint_while_compiling_a_resumed_run", "signals",
         [*numba, "--resume", "model.npz", "--epochs", "5"], 130, env=compile_env,
         signals=((signal.SIGWINCH, "fastnet:"), (signal.SIGTERM, 0.5), (signal.SIGINT, 1.0)), timeout=240)


# ----------------------------------------------------------------- --plot folders (O1, item 3)

def plot_folders(case, sweep):
    train, evaluate = sweep.TRAIN, sweep.EVALUATE
    link, fifo, mkdir = sweep.link, sweep.fifo, sweep.mkdir
    both = sweep.both
    pngs = ("out/learning_curves.png", "out/confusion_matrix.png")
    for name, argv, code, setup, writes in [
        ("proc_new", [*train, "--plot", "/proc/fastnet-plots"], 2, None, ()),
        ("proc_itself", [*train, "--plot", "/proc"], 2, None, ()),
        ("proc_self", [*train, "--plot", "/proc/self"], 2, None, ()),
        ("sys_new", [*train, "--plot", "/sys/fastnet-plots"], 2, None, ()),
        ("sys_itself", [*train, "--plot", "/sys"], 2, None, ()),
        ("same_as_save", [*train, "--plot", "out", "--save", "out"], 2, None, ()),
        ("same_as_metrics", [*train, "--plot", "out", "--metrics-json", "out"], 2, None, ()),
        ("same_as_save_spelled_twice", [*train, "--plot", "./out/", "--save", "out"], 2, None, ()),
        ("same_as_save_via_a_link", [*train, "--plot", "out", "--save", "alias"], 2, link("alias", "out"), ()),
        ("save_named_as_a_plot", [*train, "--plot", "out", "--save", "out/confusion_matrix.png"], 2, mkdir("out"),
         ()),
        ("metrics_named_as_a_plot", [*train, "--plot", "out", "--metrics-json", "out/learning_curves.png"], 2,
         mkdir("out"), ()),
        ("a_plot_is_a_directory", [*train, "--plot", "out"], 2, both(mkdir("out"), mkdir(pngs[0])), ()),
        ("a_plot_is_a_fifo", [*train, "--plot", "out"], 2, both(mkdir("out"), fifo(pngs[1])), ()),
        ("a_plot_links_to_dev_null", [*train, "--plot", "out"], 2, both(mkdir("out"), link(pngs[0], "/dev/null")),
         ()),
        ("folder_dangling_link", [*train, "--plot", "out"], 2, link("out", "nowhere"), ()),
        ("folder_link_loop", [*train, "--plot", "out"], 2, link("out", "out"), ()),
        ("folder_is_a_fifo", [*train, "--plot", "out"], 2, fifo("out"), ()),
        ("folder_links_to_dev_null", [*train, "--plot", "out"], 2, link("out", "/dev/null"), ()),
        ("folder_empty_name", [*train, "--plot", ""], 2, None, ()),
        ("folder_missing_grandparent", [*train, "--plot", "a/b/c"], 2, None, ()),
        ("new_folder", [*train, "--plot", "out"], 0, None, ("out", *pngs)),
        ("existing_folder_keeps_other_files", [*train, "--plot", "out"], 0,
         both(mkdir("out"), lambda ws: sweep.put(ws, "out/notes.txt", b"mine\n")), pngs),
        ("folder_is_a_link_to_a_folder", [*train, "--plot", "out"], 0, both(mkdir("real"), link("out", "real")),
         ("real/learning_curves.png", "real/confusion_matrix.png")),
        ("a_plot_links_to_the_resumed_model", [*train, "--resume", "model.npz", "--epochs", "2", "--plot", "out"],
         0, both(mkdir("out"), link(pngs[0], "../model.npz")), ("model.npz", *pngs)),
        ("evaluate_proc", [*evaluate, "--plot", "/proc/fastnet-plots"], 2, None, ()),
        ("evaluate_sys", [*evaluate, "--plot", "/sys/fastnet-plots"], 2, None, ()),
        ("evaluate_a_plot_is_a_directory", [*evaluate, "--plot", "out"], 2,
         both(mkdir("out"), mkdir("out/test_predictions.png")), ()),
        ("evaluate_new_folder", [*evaluate, "--plot", "out"], 0, None,
         ("out", "out/test_predictions.png", "out/confusion_matrix.png")),
        ("evaluate_new_nested_folders", [*evaluate, "--plot", "a/b/out"], 0, None,
         ("a", "a/b", "a/b/out", "a/b/out/test_predictions.png", "a/b/out/confusion_matrix.png")),
        ("evaluate_nested_under_a_file", [*evaluate, "--plot", "model.npz/b/out"], 2, None, ()),
        ("evaluate_nested_under_proc", [*evaluate, "--plot", "/proc/fastnet/b/out"], 2, None, ()),
    ]:
        check = sweep.loads_as_model("model.npz", 2) if name == "a_plot_links_to_the_resumed_model" else None
        case(f"plotdir_{name}", "plot folders", argv, code, setup=setup, writes=writes, check=check)
    if not IS_ROOT:  # permission bits stop everyone but root
        case("plotdir_read_only_parent", "plot folders", [*train, "--plot", "ro/out"], 2,
             setup=lambda ws: (ws / "ro").mkdir(mode=0o555))
