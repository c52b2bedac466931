import dataclasses
from dataclasses import dataclass

import pytest

from bench.errors import BenchError
from bench.method import Fitted, Method, build_params
from bench.registry import METHODS, Registry

EXPECTED = {"zeroshot"}


def test_methods_folder_is_discovered():
    assert EXPECTED <= set(METHODS.names())
    assert METHODS.origin("zeroshot") == "methods.zeroshot"


def test_unknown_name_suggests_the_closest():
    with pytest.raises(BenchError, match="did you mean 'zeroshot'"):
        METHODS.get("zero_shot")


@pytest.mark.parametrize("name", METHODS.names())
def test_every_method_honours_the_contract(name):
    cls = METHODS.get(name)
    assert cls.name == name and isinstance(cls.version, int) and cls.inputs in ("features", "images")
    params = build_params(cls, {})  # every parameter has a default
    assert params == cls.Params()
    assert build_params(cls, dataclasses.asdict(params)) == params  # ...that fits its own declaration
    with pytest.raises(Exception):  # hyperparameters are frozen: a run cannot mutate them
        setattr(params, next(iter(params.__dataclass_fields__), "x"), None)


@dataclass(frozen=True)
class P:
    lr: float = 0.1
    steps: int = 2
    flag: bool = False


class Plugin(Method):
    name, version, inputs, Params = "plugin", 3, "features", P

    def fit(self, task, params):
        return Fitted(predict=lambda x: x)


def test_register_twice_and_broken_contract():
    registry = Registry("method")
    registry._discovered = True
    registry.register(Plugin)
    registry.register(Plugin)  # the same class again is harmless (module re-import)
    clash = type("Clash", (Plugin,), {})
    with pytest.raises(BenchError, match="registered twice"):
        registry.register(clash)
    broken = type("Broken", (Plugin,), {"name": "broken", "inputs": "pixels"})
    with pytest.raises(BenchError, match="inputs"):
        registry.register(broken)


def test_entry_point_plugins_are_registered(monkeypatch):
    import bench.registry as reg

    class FakeEntryPoint:
        name = "plugin"

        def load(self):
            return Plugin

    monkeypatch.setattr(reg, "entry_points", lambda group: [FakeEntryPoint()] if group == "bench.methods" else [])
    registry = Registry("method")
    assert "plugin" in registry.names() and "zeroshot" in registry.names()


def test_a_broken_entry_point_is_one_line_like_a_broken_bench_plugins_module(monkeypatch):
    import bench.registry as reg

    class BrokenEntryPoint:
        name, value = "broken", "broken_pkg.methods"

        def load(self):
            raise RuntimeError("boom at import")

    monkeypatch.setattr(reg, "entry_points", lambda group: [BrokenEntryPoint()] if group == "bench.methods" else [])
    with pytest.raises(BenchError, match=r"entry point bench.methods 'broken' \(broken_pkg.methods\) failed to load: "
                                         "RuntimeError: boom at import"):
        Registry("method").names()


def test_params_are_type_checked():
    assert build_params(Plugin, {"lr": 1}).lr == 1.0  # an int is a fine float
    with pytest.raises(BenchError, match="method 'plugin': parameter 'steps' must be an integer, got a string"):
        build_params(Plugin, {"steps": "many"})
    with pytest.raises(BenchError, match="parameter 'flag' must be true or false, got an integer 1"):
        build_params(Plugin, {"flag": 1})
