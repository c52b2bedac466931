"""Method registry: methods/ modules are discovered on first use; other packages register through
the entry-point group `bench.methods` (value: a module that defines methods, or a Method class)."""

from __future__ import annotations

import importlib
import inspect
import pkgutil
from importlib.metadata import entry_points

from bench.errors import BenchError, unknown
from bench.method import RUN_PRECISIONS, Method
from bench.schema import check_identifier



class Registry:
    def __init__(self, kind: str):
        self.kind = kind
        self._items: dict[str, type] = {}
        self._origin: dict[str, str] = {}
        self._discovered = False

    def register(self, cls: type) -> type:
        name = getattr(cls, "name", None)
        if not name or not isinstance(name, str):
            raise BenchError(f"{cls.__qualname__} must set a string `name` to be registered")
        check_identifier(self.kind, name, f"{cls.__module__}.{cls.__qualname__}")
        if name in self._items and self._items[name] is not cls:
            raise BenchError(f"{self.kind} '{name}' is registered twice "
                             f"({self._origin[name]} and {cls.__module__})")
        _check_contract(cls)
        self._items[name] = cls
        self._origin[name] = cls.__module__
        return cls

    def get(self, name: str) -> type:
        self.discover()
        if name not in self._items:
            raise unknown(self.kind, name, self._items)
        return self._items[name]

    def names(self) -> list[str]:
        self.discover()
        return sorted(self._items)

    def origin(self, name: str) -> str:
        self.get(name)
        return self._origin[name]

    def discover(self) -> None:
        if self._discovered:
            return
        import methods  # the project's own method files, one module each

        for info in pkgutil.iter_modules(methods.__path__):
            try:
                module = importlib.import_module(f"methods.{info.name}")
            except Exception as exc:  # a broken method file is a bug: say which, never half-register
                raise BenchError(f"methods/{info.name}.py failed to import: {type(exc).__name__}: {exc}") from exc
            self._register_module(module)
        from bench.executors.plugins import plugin_modules

        for module in plugin_modules():  # $BENCH_PLUGINS=mod1,mod2 (e.g. for worker subprocesses)
            self._register_module(module)
        self._discovered = True
        for ep in entry_points(group="bench.methods"):
            try:
                loaded = ep.load()
            except Exception as exc:  # as $BENCH_PLUGINS: a suite silently missing a method is worse than stopping
                self._discovered = False
                raise BenchError(f"the installed plug-in entry point bench.methods '{ep.name}' ({ep.value}) failed "
                                 f"to load: {type(exc).__name__}: {exc}; fix or uninstall that package") from None
            if inspect.isclass(loaded) and issubclass(loaded, Method):
                self.register(loaded)
            elif inspect.ismodule(loaded):
                self._register_module(loaded)

    def _register_module(self, module) -> None:
        """Register every Method subclass a module defines (not the ones it merely imports)."""
        for obj in vars(module).values():
            if inspect.isclass(obj) and issubclass(obj, Method) and obj is not Method \
                    and obj.__module__ == module.__name__ and "name" in vars(obj):
                self.register(obj)


def _check_contract(cls: type) -> None:
    import dataclasses

    problems = []
    if not isinstance(getattr(cls, "version", None), int):
        problems.append("an int `version`")
    if getattr(cls, "inputs", None) not in ("features", "images"):
        problems.append("`inputs` = 'features' or 'images'")
    if getattr(cls, "precision", None) not in RUN_PRECISIONS:
        problems.append(f"`precision` one of {', '.join(RUN_PRECISIONS)}")
    params = getattr(cls, "Params", None)
    if params is None or not dataclasses.is_dataclass(params):
        problems.append("a dataclass `Params`")
    if not callable(getattr(cls, "fit", None)):
        problems.append("a `fit(task, params)` method")
    if problems:
        raise BenchError(f"method {getattr(cls, 'name', cls.__qualname__)} needs {', '.join(problems)}")


METHODS = Registry("method")


def register_method(cls: type) -> type:
    """Class decorator used by method files."""
    return METHODS.register(cls)
