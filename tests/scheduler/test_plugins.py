"""$BENCH_PLUGINS: methods from modules named in the environment (workers inherit it)."""

import pytest

from bench.errors import BenchError
from bench.executors.plugins import plugin_modules
from bench.registry import Registry


def test_plugin_modules_register_their_methods(monkeypatch):
    monkeypatch.setenv("BENCH_PLUGINS", " tests.scheduler.plugin_method , ")
    modules = plugin_modules()
    assert [m.__name__ for m in modules] == ["tests.scheduler.plugin_method"]
    registry = Registry("method")
    registry._discovered = True  # only the plug-in, not methods/
    for module in modules:
        registry._register_module(module)
    assert registry.names() == ["plugin_nothing"]


def test_a_plugin_that_does_not_import_is_an_error():
    assert plugin_modules("") == []
    with pytest.raises(BenchError, match="BENCH_PLUGINS names 'no_such_module_xyz'"):
        plugin_modules("no_such_module_xyz")
