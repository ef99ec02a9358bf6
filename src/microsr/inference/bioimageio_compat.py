"""A fix that lets bioimageio.spec 0.5.12 serialise under pydantic >= 2.14.

bioimageio.core 0.11 (the newest) pins bioimageio.spec 0.5.12, whose wrap serialisers call
pydantic's handler as ``handler(value, info)``, copied from an old pydantic docstring. The
second argument is ``index_key``; since pydantic 2.14 (pydantic PR #13506) a
``SerializationInfo`` there raises ``TypeError: 'index_key' is expected to be an integer or a
string``, so no model description with a file or weights in it can be built or saved.
Pydantic is not pinned back for this (the rest of microsr and its environment use 2.14):
instead the three serialisers that make the call are recompiled from their own source without
the ``info`` argument, which is what the old call did (pydantic ignored ``info`` there).
Nothing changes when the installed bioimageio.spec no longer makes the call (checked on its
source), and applying it twice is harmless.
"""

from __future__ import annotations

import inspect
import logging
import re
import textwrap

log = logging.getLogger(__name__)

#: ``handler(X, info,  # pyright: ...)``: the call as bioimageio.spec 0.5.12 writes it.
_BUGGY_CALL = re.compile(
    r"handler\(\s*(\w+),\s*info,\s*# pyright: ignore\[reportArgumentType\][^\n]*\n\s*\)"
)


def _fixed_code(function):
    """``function``'s code recompiled with ``handler(X)`` for the buggy call; None: no call."""
    try:
        source = textwrap.dedent(inspect.getsource(function))
    except (OSError, TypeError):
        return None
    if not _BUGGY_CALL.search(source):
        return None
    source = _BUGGY_CALL.sub(r"handler(\1)", source)
    source = source[source.index("def ") :]  # without decorators (pydantic's, already applied)
    namespace: dict = {}
    exec(compile(source, inspect.getsourcefile(function) or "<bioimageio>", "exec"),
         dict(function.__globals__), namespace)  # fmt: skip
    return namespace[function.__name__].__code__


def patch_bioimageio_serializers() -> int:
    """Apply the fix where the installed bioimageio.spec needs it; how many were patched."""
    from bioimageio.spec._internal import io_packaging, validated_string_with_inner_node
    from bioimageio.spec.model import v0_4

    node = validated_string_with_inner_node.ValidatedStringWithInnerNode
    functions = [
        io_packaging.package_file_descr_serializer,
        v0_4.package_weights,
        node.__dict__["_serialize"].wrapped,  # behind pydantic's decorator proxy
    ]
    n = 0
    for function in functions:
        if getattr(function, "_microsr_patched", False):
            continue
        code = _fixed_code(function)
        if code is not None and code.co_freevars == function.__code__.co_freevars:
            function.__code__ = code
            function._microsr_patched = True
            n += 1
    if n:
        log.debug("patched %d bioimageio.spec serialisers for pydantic >= 2.14", n)
    return n
