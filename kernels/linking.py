"""Kernels compiled once: compiled code calls them through a fixed symbol instead of a copy of their code.

When one Numba function calls another, Numba links the callee's LLVM module into the caller's and
optimises and generates machine code for the whole again; every level of a call chain re-does all
the code below it (docs/performance.md, "Compile time"). Here a callee is compiled on its own, its
machine code registered with LLVM under a name fixed by the function and its argument types
(`fastnet_<name>_<hash>`), and callers hold only a call to that name, in Numba's own calling
convention (exceptions propagate as from any Numba call). `kernels.blas` reaches OpenBLAS the same way.

internal(fn): a Numba dispatcher with no CPython or cfunc wrapper, for kernels that only compiled
code calls; from Python it raises TypeError (a wrapper-less kernel called from Python would
otherwise crash the interpreter). apart(dispatcher): what compiled code calls instead of the
dispatcher, and its `link(argtypes)`, which compiles (or loads from Numba's cache) the callee for
those types and registers its symbol.

The trap: a caller loaded from Numba's cache names a callee's symbol without compiling the callee,
and MCJIT ends the process when a name is unresolved. So before a cached caller runs, its callees
must be linked for the caller's types: the Python wrappers in kernels.jit do it (jit._link); when a
callee's cache entry is missing or stale, linking compiles it. Under NUMBA_DISABLE_JIT both are the
plain Python functions.
"""

import hashlib
import inspect

import llvmlite.binding as llvm
from numba import config
from numba.core import cgutils
from numba.core.caching import FunctionCache
from numba.core.registry import CPUDispatcher
from numba.extending import intrinsic


class InternalDispatcher(CPUDispatcher):
    """A dispatcher whose compiled versions only compiled code calls: none is entered from Python."""

    def add_overload(self, cres):
        self.overloads[tuple(cres.signature.args)] = cres  # no entry point for Python calls (it has no wrapper)

    def _compile_for_args(self, *args, **kws):
        raise TypeError(f"{self.py_func.__name__} is a kernel for compiled callers only; call its public wrapper")


class LightCache(FunctionCache):
    """Numba's on-disk cache, with a lighter load. Numba's own load first refreshes the target
    context, importing every typing and lowering registry of Numba (and SciPy's BLAS through
    numba.np.linalg): 0.2-0.6 s, the largest part of a warm start, for code that is already compiled.
    A loaded kernel needs only Numba's runtime and, for a parallel one, its thread pool; the first
    real compile refreshes the context itself (numba.core.compiler.CompilerBase). Where these
    internals are missing (another Numba), the load is Numba's own."""

    def load_overload(self, sig, target_context):
        try:
            from numba.core.runtime import rtsys
            from numba.np.ufunc.parallel import _launch_threads

            guard = self._guard_against_spurious_io_errors
        except (ImportError, AttributeError):
            return super().load_overload(sig, target_context)
        rtsys.initialize(target_context)
        _launch_threads()
        with guard():
            return self._load_overload(sig, target_context)


def light(dispatcher):
    """dispatcher, its on-disk cache (where it has one) loading as LightCache does."""
    if type(getattr(dispatcher, "_cache", None)) is FunctionCache:
        dispatcher._cache.__class__ = LightCache
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


def symbol(name, argtypes):
    """The fixed symbol of kernel `name` compiled for argtypes: the same in every process."""
    return f"fastnet_{name}_{hashlib.sha256(str(tuple(argtypes)).encode()).hexdigest()[:20]}"


def apart(dispatcher):
    """What compiled code calls in place of `dispatcher`: a call through the symbol of its compiled
    version for the call's argument types. `.link(argtypes)` makes that version and its symbol."""
    if config.DISABLE_JIT:
        dispatcher.link = lambda argtypes: None
        return dispatcher
    linked = {}
    name = dispatcher.py_func.__name__

    def link(argtypes):
        """(symbol, return type) of the callee compiled for argtypes, registered with LLVM."""
        argtypes = tuple(argtypes)
        if argtypes not in linked:
            dispatcher.compile(argtypes)
            cres = dispatcher.overloads[argtypes]
            sym = symbol(name, argtypes)
            llvm.add_symbol(sym, cres.library.get_pointer_to_function(cres.fndesc.llvm_func_name))
            linked[argtypes] = sym, cres.signature.return_type
        return linked[argtypes]

    def typer(typingctx, *args):
        sym, restype = link(args)
        sig = restype(*args)

        def codegen(context, builder, signature, llargs):
            fnty = context.call_conv.get_function_type(sig.return_type, sig.args)
            fn = cgutils.get_or_insert_function(builder.module, fnty, sym)
            status, result = context.call_conv.call_function(builder, fn, sig.return_type, sig.args, llargs)
            with cgutils.if_unlikely(builder, status.is_error):
                context.call_conv.return_status_propagate(builder, status)
            return result

        return sig, codegen

    # An intrinsic's typer needs named parameters (Numba cannot lower a *args call): the callee's.
    params = ", ".join(inspect.signature(dispatcher.py_func).parameters)
    scope = {"typer": typer}
    exec(f"def {name}(typingctx, {params}):\n    return typer(typingctx, {params})", scope)
    call = intrinsic(scope[name])
    call.link = link
    call.__doc__ = f"{name}, compiled apart (kernels.linking)"
    return call
