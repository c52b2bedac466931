import pytest

from bench import config
from bench.errors import BenchError
from bench.jobs import resolve_params

BASE = """
[backbones.b]
builtin = "smoke"
[suites.s]
datasets = ["dtd"]
shots = [1, 2]
seeds = [1]
backbone = "b"
methods = ["zeroshot"]
"""


def load_text(tmp_path, text, **known):
    path = tmp_path / "tasks.toml"
    path.write_text(text)
    return config.load(path, known_methods=known.get("methods", ["zeroshot", "coop"]),
                       known_datasets=known.get("datasets", ["dtd", "eurosat"]))


def test_repo_tasks_file_declares_the_protocol(smoke_config):
    suite = smoke_config.suite("coop11")
    assert len(suite.datasets) == 11 and suite.shots == (1, 2, 4, 8, 16) and suite.seeds == (1, 2, 3)
    assert suite.backbone.model == "ViT-B-16-quickgelu" and suite.backbone.pretrained == "openai"
    assert smoke_config.suite("smoke").backbone.builtin == "smoke"


@pytest.mark.parametrize("edit, message", [
    (("shots = [1, 2]", "shot = [1, 2]"), "unknown key 'shot' (did you mean 'shots'?)"),
    (("seeds = [1]", 'seeds = "1"'), "'seeds' must be a list"),
    (('datasets = ["dtd"]', 'datasets = ["dtdd"]'), "unknown dataset 'dtdd' (did you mean 'dtd'?)"),
    (('methods = ["zeroshot"]', 'methods = ["zeroshoot"]'), "unknown method 'zeroshoot' (did you mean 'zeroshot'?)"),
    (('backbone = "b"', 'backbone = "c"'), "unknown backbone 'c'"),
    (("shots = [1, 2]", "shots = [0]"), "'shots' must be a list of positive integers"),
    (('builtin = "smoke"', 'builtin = "smoke"\nmodel = "RN50"'), "exactly one of"),
    (('backbone = "b"', 'backbone = "b"\nprotocol = "fewshto"'),
     "[suites.s]: unknown protocol 'fewshto' (did you mean 'fewshot'?)"),
    (('backbone = "b"', 'backbone = "b"\nprotocol = "base_to_new"'),
     "[suites.s]: unknown protocol 'base_to_new' (choose from: fewshot)"),
    (('backbone = "b"', 'backbone = "b"\nprotocol = 1'), "'protocol' must be a str"),
    (('backbone = "b"', 'backbone = "b"\nprotocl = "fewshot"'), "unknown key 'protocl' (did you mean 'protocol'?)"),
])
def test_mistakes_are_one_clear_line(tmp_path, edit, message):
    with pytest.raises(BenchError) as info:
        load_text(tmp_path, BASE.replace(*edit))
    assert message in str(info.value) and "\n" not in str(info.value)


def test_protocol_defaults_to_fewshot(tmp_path, smoke_config):
    assert load_text(tmp_path, BASE).suite("s").protocol == "fewshot"
    assert load_text(tmp_path, BASE + 'protocol = "fewshot"\n').suite("s").protocol == "fewshot"
    assert smoke_config.suite("smoke").protocol == smoke_config.suite("coop11").protocol == "fewshot"


def test_invalid_toml_and_missing_file(tmp_path):
    with pytest.raises(BenchError, match="invalid TOML"):
        load_text(tmp_path, "[suites.s\n")
    with pytest.raises(BenchError, match="tasks file not found"):
        config.load(tmp_path / "nope.toml")


def test_paths_expand_env_and_are_relative_to_the_file(tmp_path, monkeypatch):
    monkeypatch.setenv("BENCH_DATA", "/data/coop")
    cfg = load_text(tmp_path, BASE + 'data_root = "${BENCH_DATA:-data}"\nresults_dir = "out"\n')
    assert str(cfg.suite("s").data_root) == "/data/coop"
    assert cfg.suite("s").results_dir == tmp_path / "out"
    monkeypatch.delenv("BENCH_DATA")
    assert load_text(tmp_path, BASE).suite("s").data_root == tmp_path / "data"


def test_variants_and_conditional_overrides(tmp_path):
    text = BASE + """
[methods.zeroshot]
templates = ["a {}."]
[methods.zs_ensemble]
base = "zeroshot"
templates = ["a {}.", "the {}."]
[[methods.zs_ensemble.when]]
datasets = ["dtd"]
shots = [2]
set = { templates = ["{} texture."] }
"""
    suite = load_text(tmp_path, text).suite("s")
    assert resolve_params(suite, "zeroshot", "dtd", 1) == ("zeroshot", {"templates": ("a {}.",)})
    assert resolve_params(suite, "zs_ensemble", "dtd", 1)[1]["templates"] == ("a {}.", "the {}.")
    assert resolve_params(suite, "zs_ensemble", "dtd", 2)[1]["templates"] == ("{} texture.",)
    assert resolve_params(suite, "zs_ensemble", "eurosat", 2)[1]["templates"] == ("a {}.", "the {}.")


def test_unknown_method_parameter_is_rejected(tmp_path):
    suite = load_text(tmp_path, BASE + "[methods.zeroshot]\ntemplate = ['x']\n").suite("s")
    with pytest.raises(BenchError, match="has no parameter 'template' \\(did you mean 'templates'\\?\\)"):
        resolve_params(suite, "zeroshot", "dtd", 1)


def test_variant_of_unknown_method(tmp_path):
    with pytest.raises(BenchError, match="unknown method 'cop' \\(did you mean 'coop'\\?\\)"):
        load_text(tmp_path, BASE + '[methods.v]\nbase = "cop"\n')
