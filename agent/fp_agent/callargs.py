"""What user expressions (watch --expr and -f, tt -f, trace -f) see of a call's arguments: `args`,
`kwargs` and `params`, built from what the engines read at the start of the call.

Both engines see the call bound to the function's parameters, never the call as it was spelt:
on 3.12+ sys.monitoring shows the frame, and on 3.8-3.11 the wrapper has the function's own
signature. So `total(prices, coupon="HALF")` and `total(prices, "HALF")` look the same. The
names are given meanings that keep a filter written for the call as made true for it, however
the caller spelt it, on every version:

- `args`: every positional parameter's value in order (positional-only ones included), then the
  extra positional arguments (`*rest`). `args[0]` is the first parameter after the target.
- `kwargs`: every parameter that can be passed by keyword (neither positional-only nor the
  bound target), plus the extra keyword arguments (`**extra`), leaving out a parameter that
  holds its default value (the default object itself: nobody is shown passing what they did
  not pass) and, when extra positional arguments were given, the positional parameters (they
  were necessarily passed by position). So `kwargs.get("coupon") == "HALF"` is true for both
  spellings above, and `kwargs` of `f(1, 2, 3, 4)` for `def f(a, b=0, *rest, c=None, **kw)` is
  `{}`.
- `params`: every parameter by name, defaults included, `*rest` as a tuple and `**extra` as a
  dict under their own names (the bound target is `target`, not in `params`).

For a function nested in another (-nm) the function object is made anew at each call of the
outer function and fp does not hold it: its defaults are unknown, and `kwargs` keeps the
parameters that hold them.
"""

_CO_VARARGS = 0x04
_CO_VARKEYWORDS = 0x08


class CallArgs(object):
    """The parameter layout of one located function; builds kwargs and params of its calls.
    `args` given to the methods is the engines' (the target left out), `kw` their keyword-only
    parameters merged with **extra (a dict, or None when the function has neither)."""

    __slots__ = ("names", "posonly", "kwonly", "kwonly_set", "varargs", "varkw", "function", "first_default", "skip")

    def __init__(self, located):
        code = located.code
        names = code.co_varnames
        argc = code.co_argcount
        nkw = code.co_kwonlyargcount
        skip = 1 if located.bind else 0
        pos = names[:argc]
        self.skip = skip
        self.names = pos[skip:]
        self.posonly = max(0, getattr(code, "co_posonlyargcount", 0) - skip)
        self.kwonly = names[argc : argc + nkw]
        self.kwonly_set = frozenset(self.kwonly)
        i = argc + nkw
        self.varargs = self.varkw = None
        if code.co_flags & _CO_VARARGS:
            self.varargs = names[i]
            i += 1
        if code.co_flags & _CO_VARKEYWORDS:
            self.varkw = names[i]
        self.function = located.function

    def defaulted(self, args, kw):
        """The names of the parameters that hold their default object in this call (read now:
        a program that changes __defaults__ changes what counts)."""
        function = self.function
        if function is None:
            return frozenset()
        out = []
        defaults = function.__defaults__
        if defaults:
            first = len(self.names) + self.skip - len(defaults)  # index in the full positional list
            for i in range(max(first - self.skip, 0), min(len(self.names), len(args))):
                if args[i] is defaults[i + self.skip - first]:
                    out.append(self.names[i])
        kwdefaults = function.__kwdefaults__
        if kwdefaults and kw:
            for name in self.kwonly:
                if name in kwdefaults and name in kw and kw[name] is kwdefaults[name]:
                    out.append(name)
        return frozenset(out)

    def kwargs(self, args, kw, defaulted=None):
        """A fresh dict: see the module docstring. `defaulted`: the names to leave out as
        holding their default (defaulted() of the call as it was), else found now. This runs
        for every call a filter on kwargs checks: one pass, no set built."""
        out = {}
        names = self.names
        n = len(names)
        if defaulted is not None:
            if len(args) <= n:
                for i in range(self.posonly, min(n, len(args))):
                    if names[i] not in defaulted:
                        out[names[i]] = args[i]
            if kw:
                for name, value in kw.items():
                    if name not in defaulted:
                        out[name] = value
            return out
        function = self.function
        if len(args) <= n:  # no extra positional arguments
            defaults = function.__defaults__ if function is not None else None
            # index in args of the first parameter that has a default (defaults end the list)
            first = n - len(defaults) if defaults else n
            for i in range(self.posonly, min(n, len(args))):
                value = args[i]
                if i >= first and value is defaults[i - first]:
                    continue
                out[names[i]] = value
        if kw:
            kwdefaults = function.__kwdefaults__ if function is not None else None
            for name, value in kw.items():
                # (only keyword-only parameters have kwdefaults; **extra never shares their names)
                if kwdefaults and name in kwdefaults and kwdefaults[name] is value:
                    continue
                out[name] = value
        return out

    def params(self, args, kw):
        """A fresh dict of every parameter by name, in the signature's order."""
        names = self.names
        out = dict(zip(names, args))
        if self.varargs is not None:
            out[self.varargs] = tuple(args[len(names) :])
        extra = {}
        if kw:
            for name, value in kw.items():
                if name in self.kwonly_set:
                    out[name] = value
                else:
                    extra[name] = value
        if self.varkw is not None:
            out[self.varkw] = extra
        return out
