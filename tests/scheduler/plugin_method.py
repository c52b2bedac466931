"""A method that only exists when $BENCH_PLUGINS names this module (see bench/executors/plugins.py)."""

from dataclasses import dataclass

from bench.method import Fitted, Method


@dataclass(frozen=True)
class NothingParams:
    pass


class Nothing(Method):
    name = "plugin_nothing"
    version = 1
    inputs = "features"
    Params = NothingParams

    def fit(self, task, params) -> Fitted:
        return Fitted(predict=lambda feats: feats[:, :1])
