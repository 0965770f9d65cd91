"""Kernels compiled once: compiled code calls them through a slot instead of a copy of their code.

When one Numba function calls another, Numba links the callee's LLVM module into the caller's and
optimises and generates machine code for the whole again; every level of a call chain re-does all
the code below it (docs/performance.md, "Compile time"). Here a callee is compiled on its own and
callers hold only a call through its slot: a pointer in this process's memory, registered with
LLVM under a name fixed by the kernel and its argument types (`fastnet_<name>_<hash>`), which holds
the compiled callee's address once it is linked. The call is in Numba's own calling convention
(exceptions propagate as from any Numba call). A callee called apart returns nothing (its results
go into its arguments), so a caller's type is known without compiling the callee: callers and
callees compile in any order, in any process (kernels.parallel). `kernels.blas` reaches OpenBLAS
through a fixed symbol the same way.

internal(fn): a Numba dispatcher with no CPython or cfunc wrapper, for kernels that only compiled
code calls; from Python it raises TypeError (a wrapper-less kernel called from Python would
otherwise crash the interpreter). apart(dispatcher): what compiled code calls instead of the
dispatcher; its `slot(argtypes)` registers the slot, its `link(argtypes)` compiles (or loads from
Numba's cache) the callee for those types and fills the slot.

The traps: a caller loaded from Numba's cache names its callees' slots, and MCJIT ends the process
when a name is unresolved, so every slot is registered before a cached caller loads; and a slot
is empty until its callee is linked, so the Python wrappers in kernels.jit link every callee before
the caller runs (jit._run), and a call through an empty slot raises RuntimeError instead of
jumping to address 0. When a callee's cache entry is missing or stale, linking compiles it. Under
NUMBA_DISABLE_JIT both are the plain Python functions.

KernelCache: Numba's on-disk cache of fastnet's own dispatchers, loading lighter, finding the
kernels that kernels.prebuild ships (prebuilt/) when the user's cache lacks one, and saving each
version under a name of its own (KeyedCacheFile).
"""

import ctypes
import functools
import hashlib
import inspect
import json
import os
import sys
import types as pytypes

import llvmlite.binding as llvm
from llvmlite import ir
from numba import config, njit, types
from numba.core import cgutils
from numba.core.caching import FunctionCache, IndexDataCacheFile
from numba.core.registry import CPUDispatcher
from numba.extending import intrinsic


class InternalDispatcher(CPUDispatcher):
    """A dispatcher whose compiled versions only compiled code calls: none is entered from Python."""

    def add_overload(self, cres):
        self.overloads[tuple(cres.signature.args)] = cres  # no entry point for Python calls (it has no wrapper)

    def _compile_for_args(self, *args, **kws):
        raise TypeError(f"{self.py_func.__name__} is a kernel for compiled callers only; call its public wrapper")


class KernelCache(FunctionCache):
    """Numba's on-disk cache of a kernel, loading lighter and falling back on kernels shipped prebuilt.

    Numba's own load first refreshes the target context, importing every typing and lowering
    registry of Numba (and SciPy's BLAS through numba.np.linalg): the largest part of a warm start
    (docs/performance.md#compile-time-and-the-first-run), for code that is already compiled. A
    loaded kernel needs only Numba's runtime and, for a parallel one, its thread pool; the first
    real compile refreshes the context itself (numba.core.compiler.CompilerBase).

    When the user's cache lacks a kernel, it is looked up among the files kernels.prebuild ships
    in kernels/prebuilt/, compiled for a portable CPU baseline (FLAVOURS), under that baseline's
    key, if prebuilt_usable(). Any mismatch is a miss, and Numba compiles as before. Where Numba lacks the
    internals used here (another version), the load is Numba's own.
    """

    def load_overload(self, sig, target_context):
        runtime = _internals(self)
        if runtime is None:
            return super().load_overload(sig, target_context)
        for start in runtime:
            start(target_context)
        with self._guard_against_spurious_io_errors():
            return self._load_overload(sig, target_context) or self._load_prebuilt(sig, target_context)

    def has(self, sig, codegen):
        """True when a version for sig is here without compiling: in the user's cache or shipped
        (read from the indexes, nothing loaded)."""
        if _internals(self) is None:
            return False
        if self._index_key(sig, codegen) in self._cache_file._load_index():
            return True
        shipped = self._shipped(codegen)
        return shipped is not None and self._prebuilt_key(sig, codegen) in shipped._load_index()

    def holds_any(self, codegen):
        """True when a load may find some compiled version here: the user's cache, or one shipped."""
        if self._cache_file._load_index():
            return True
        shipped = self._shipped(codegen)
        return shipped is not None and bool(shipped._load_index())

    def _shipped(self, codegen):
        """The index of the kernels shipped prebuilt for this kernel, None where they do not fit."""
        if not prebuilt_usable(codegen):
            return None
        return IndexDataCacheFile(PREBUILT, self._impl.filename_base, self._cache_file._source_stamp)

    def _prebuilt_key(self, sig, codegen):
        """sig's index key in the shipped files: the host's, with the flavour's CPU and features."""
        cpu, features, _ = FLAVOURS[flavour()]
        key = self._index_key(sig, codegen)
        return (key[0], (codegen.magic_tuple()[0], cpu, features), *key[2:])

    def _load_prebuilt(self, sig, target_context):
        codegen = target_context.codegen()
        shipped = self._shipped(codegen)
        data = None if shipped is None else shipped.load(self._prebuilt_key(sig, codegen))
        return None if data is None else self._impl.rebuild(target_context, data)


class KeyedCacheFile(IndexDataCacheFile):
    """Numba's cache files of one function, each compiled version's data file named by its key.

    Numba numbers the data files in the order versions are saved, so two processes saving two
    versions of one function at once (compile workers, kernels.parallel; two runs sharing a cache)
    may both take number n, and the index then maps one version to the other's code. Named by the
    key, the data file of a version holds that version or nothing: writing the data before the
    index, a lost race costs a compile, never wrong code.
    """

    def save(self, key, data):
        name = self._data_name(int(hashlib.sha256(str(key).encode()).hexdigest()[:15], 16))
        self._save_data(name, data)
        overloads = self._load_index()
        overloads[key] = name
        self._save_index(overloads)


def _internals(cache):
    """What a light load starts (Numba's runtime, its thread pool), after checking that the Numba
    internals KernelCache uses exist; None where one is missing (another Numba: load as Numba does)."""
    try:
        from numba.core.runtime import rtsys
        from numba.np.ufunc.parallel import _launch_threads

        cache._guard_against_spurious_io_errors, cache._index_key, cache._impl.rebuild  # noqa: B018
        cache._cache_file._source_stamp, cache._cache_file._load_index  # noqa: B018
    except (ImportError, AttributeError):
        return None
    return rtsys.initialize, lambda context: _launch_threads()


PREBUILT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "prebuilt")  # kernels.prebuild writes it

# The prebuilt flavours: the CPU name and LLVM features they are compiled for, and the features
# (LLVM's names) a host needs to run them. v3: AVX2 and FMA, 256-bit vectors. v4-512: AVX-512 with
# 512-bit vectors. The flavour must vectorise as the host's own compile would: a fastmath reduction
# (the L2 penalty's Σ W²) rounds by its vector width, so a wrong flavour gives other last bits.
V3_FEATURES = frozenset(("avx", "avx2", "bmi", "bmi2", "cx16", "f16c", "fma", "lzcnt", "movbe", "popcnt", "sahf",
                         "sse4.1", "sse4.2", "ssse3", "xsave"))
V4_FEATURES = V3_FEATURES | {"avx512f", "avx512bw", "avx512cd", "avx512dq", "avx512vl"}
FLAVOURS = {"v3": ("x86-64-v3", "", V3_FEATURES), "v4-512": ("x86-64-v4", "-prefer-256-bit", V4_FEATURES)}
# Hosts with AVX-512, by LLVM's CPU name, and the flavour that rounds as their compile does (each
# checked: the same Σ W² bits as a compile for the name itself, docs/performance.md). An AVX-512
# CPU not listed gets none (compiled on the machine); one without AVX-512 gets v3.
AVX512_HOSTS = {**dict.fromkeys(("znver4", "znver5", "knl", "knm"), "v4-512"),
                **dict.fromkeys(("skylake-avx512", "cascadelake", "cooperlake", "cannonlake", "icelake-client",
                                 "icelake-server", "tigerlake", "rocketlake", "sapphirerapids", "emeraldrapids",
                                 "graniterapids"), "v3")}


def flavour(name=None, features=None):
    """The prebuilt flavour for this host (or the CPU `name` with `features`), None for none."""
    name = llvm.get_host_cpu_name() if name is None else name
    features = _host_features() if features is None else features
    chosen = AVX512_HOSTS.get(name) if "avx512f" in features else "v3"
    return chosen if chosen and FLAVOURS[chosen][2] <= features else None


@functools.cache
def _manifest():
    try:
        with open(os.path.join(PREBUILT, "manifest.json")) as f:
            return json.load(f)
    except (OSError, ValueError):
        return None


def prebuilt_usable(codegen):
    """True when the shipped kernels fit this process: built by this Numba and Python, for this BLAS
    integer width (the gemm symbol's name), from this jit.py, in the flavour this x86-64 CPU takes
    (flavour()), and NUMBA_CPU_NAME unset (whoever sets it wants code for that CPU)."""
    from . import blas

    made = _manifest()
    if not made or os.environ.get("NUMBA_CPU_NAME") or os.environ.get("FASTNET_NO_PREBUILT"):
        return False
    import numba

    if (made.get("numba"), made.get("python"), made.get("blas_int_bits")) != (
            numba.__version__, list(sys.version_info[:2]), blas._bits):
        return False
    if not codegen.magic_tuple()[0].startswith("x86_64") or made.get("jit_sha256") != _jit_sha256():
        return False
    return flavour() in made.get("flavours", ())


@functools.cache
def _jit_sha256():
    with open(os.path.join(os.path.dirname(os.path.abspath(__file__)), "jit.py"), "rb") as f:
        return hashlib.sha256(f.read()).hexdigest()


@functools.cache
def _host_features():
    return frozenset(name for name, on in llvm.get_host_cpu_features().items() if on)


def light(dispatcher):
    """dispatcher, its on-disk cache (where it has one) a KernelCache."""
    if type(getattr(dispatcher, "_cache", None)) is FunctionCache:
        dispatcher._cache.__class__ = KernelCache
        if type(getattr(dispatcher._cache, "_cache_file", None)) is IndexDataCacheFile:
            dispatcher._cache._cache_file.__class__ = KeyedCacheFile
    return dispatcher


def internal(options, fn=None):
    """Decorator: fn compiled with the njit `options` (kernels.JIT_OPTIONS and more), without wrappers."""
    if fn is None:
        return lambda f: internal(options, f)
    if config.DISABLE_JIT:
        return fn
    options = dict(options)
    cache = options.pop("cache", False)
    targetoptions = dict(options, nopython=True, no_cpython_wrapper=True, no_cfunc_wrapper=True)
    dispatcher = InternalDispatcher(py_func=fn, locals={}, targetoptions=targetoptions)
    if cache:
        dispatcher.enable_caching()
    return light(dispatcher)


def twin_of(kernel, options):
    """A dispatcher of the Python function behind the internal `kernel`, compiled with the njit
    `options` and with its wrappers, so that Python may call it too. Its own name (`<name>_py`)
    keeps its entries in Numba's cache apart from the internal kernel's, compiled without wrappers."""
    fn = getattr(kernel, "py_func", kernel)
    if config.DISABLE_JIT:
        return fn
    copy = pytypes.FunctionType(fn.__code__, fn.__globals__, f"{fn.__name__}_py", fn.__defaults__, fn.__closure__)
    copy.__qualname__, copy.__doc__ = f"{fn.__qualname__}_py", fn.__doc__
    return njit(**options)(copy)


def symbol(name, argtypes):
    """The fixed symbol of kernel `name`'s slot for argtypes: the same in every process."""
    return f"fastnet_{name}_{hashlib.sha256(str(tuple(argtypes)).encode()).hexdigest()[:20]}"


_SLOTS = {}  # symbol -> the slot (a pointer in this process's memory) that LLVM resolves it to


def slot(name, argtypes):
    """The symbol of kernel `name`'s slot for argtypes, registered with LLVM: a pointer that holds
    the compiled kernel's address once it is linked (null until then)."""
    sym = symbol(name, argtypes)
    if sym not in _SLOTS:
        _SLOTS[sym] = ctypes.c_void_p(None)
        llvm.add_symbol(sym, ctypes.addressof(_SLOTS[sym]))
    return sym


def apart(dispatcher):
    """What compiled code calls in place of `dispatcher`, a kernel that returns nothing: a call
    through its slot for the call's argument types. A caller compiles without the callee; the
    callee's `.link(argtypes)` compiles (or loads) it and fills the slot, before the caller runs.
    A call through an empty slot raises RuntimeError instead of jumping to address 0."""
    if config.DISABLE_JIT:
        dispatcher.link = lambda argtypes: None
        return dispatcher
    linked = set()
    name = dispatcher.py_func.__name__

    def link(argtypes):
        """Compile or load the callee for argtypes and put its address in its slot."""
        argtypes = tuple(argtypes)
        if argtypes not in linked:
            sym = slot(name, argtypes)
            dispatcher.compile(argtypes)
            cres = dispatcher.overloads[argtypes]
            if cres.signature.return_type != types.none:
                raise TypeError(f"{name} returns {cres.signature.return_type}: a kernel called apart returns nothing")
            _SLOTS[sym].value = cres.library.get_pointer_to_function(cres.fndesc.llvm_func_name)
            linked.add(argtypes)

    def typer(typingctx, *args):
        sym, sig = slot(name, args), types.none(*args)

        def codegen(context, builder, signature, llargs):
            fnty = context.call_conv.get_function_type(types.none, sig.args)
            pointer = builder.module.globals.get(sym) or ir.GlobalVariable(builder.module, fnty.as_pointer(), sym)
            fn = builder.load(pointer)
            with cgutils.if_unlikely(builder, cgutils.is_null(builder, fn)):
                context.call_conv.return_user_exc(builder, RuntimeError, (f"{name} is not linked",))
            status, _ = context.call_conv.call_function(builder, fn, types.none, sig.args, llargs)
            with cgutils.if_unlikely(builder, status.is_error):
                context.call_conv.return_status_propagate(builder, status)
            return context.get_dummy_value()

        return sig, codegen

    # An intrinsic's typer needs named parameters (Numba cannot lower a *args call): the callee's.
    params = ", ".join(inspect.signature(dispatcher.py_func).parameters)
    scope = {"typer": typer}
    exec(f"def {name}(typingctx, {params}):\n    return typer(typingctx, {params})", scope)
    call = intrinsic(scope[name])
    call.link, call.dispatcher = link, dispatcher
    call.slot = lambda argtypes: slot(name, tuple(argtypes))
    call.__doc__ = f"{name}, compiled apart (kernels.linking)"
    return call
