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
    (('backbone = "b"', 'backbone = "b"\nprotocol = "base2new"'),
     "[suites.s]: unknown protocol 'base2new' (did you mean 'base_to_new'?)"),
    (('backbone = "b"', 'backbone = "b"\nprotocol = "cross_dataset"'),
     '[suites.s]: protocol = "cross_dataset" needs targets = [...], the datasets to evaluate on'),
    (('backbone = "b"', 'backbone = "b"\ntargets = ["eurosat"]'),
     '[suites.s]: targets: only protocol = "domain_generalization" or "cross_dataset" evaluates on other '
     'datasets (this suite\'s protocol is "fewshot"); remove targets'),
    (('backbone = "b"', 'backbone = "b"\nprotocol = 1'), "'protocol' must be a str"),
    (('backbone = "b"', 'backbone = "b"\nprotocl = "fewshot"'), "unknown key 'protocl' (did you mean 'protocol'?)"),
])
def test_mistakes_are_one_clear_line(tmp_path, edit, message):
    with pytest.raises(BenchError) as info:
        load_text(tmp_path, BASE.replace(*edit))
    assert message in str(info.value) and "\n" not in str(info.value)


DG = BASE.replace('backbone = "b"', 'backbone = "b"\nprotocol = "domain_generalization"')


def load_dg(tmp_path, targets, domains):
    path = tmp_path / "tasks.toml"
    path.write_text(DG.replace('datasets = ["dtd"]', f'datasets = ["dtd"]\ntargets = {targets}'))
    return config.load(path, known_methods=["zeroshot"], known_datasets=["dtd", "dtd_v2", "dtd_r", "eurosat"],
                       domain_of=lambda name: domains.get(name, ""))


def test_domain_generalization_targets_are_the_sources_variants(tmp_path):
    suite = load_dg(tmp_path, '["dtd_v2", "dtd_r"]', {"dtd_v2": "dtd", "dtd_r": "dtd"}).suite("s")
    assert suite.targets == {"dtd": ("dtd_v2", "dtd_r")}


@pytest.mark.parametrize("targets, domains, message", [
    ('["eurosat"]', {}, "targets: 'eurosat' is not a shifted variant of a dataset (its card has no domain_of)"),
    ('["dtd_v2"]', {"dtd_v2": "eurosat"}, "targets: 'dtd_v2' is a variant of 'eurosat', which is not in datasets"),
])
def test_domain_generalization_refuses_unrelated_targets(tmp_path, targets, domains, message):
    with pytest.raises(BenchError) as info:
        load_dg(tmp_path, targets, domains)
    assert message in str(info.value) and "cross_dataset" in str(info.value)


def test_cross_dataset_targets_skip_the_source(tmp_path):
    text = BASE.replace('datasets = ["dtd"]', 'datasets = ["dtd", "eurosat"]\ntargets = ["dtd", "eurosat"]\n'
                        'protocol = "cross_dataset"')
    assert load_text(tmp_path, text).suite("s").targets == {"dtd": ("eurosat",), "eurosat": ("dtd",)}


def test_a_source_needs_something_to_transfer_to(tmp_path):
    text = BASE.replace('datasets = ["dtd"]', 'datasets = ["dtd"]\ntargets = ["dtd"]\nprotocol = "cross_dataset"')
    with pytest.raises(BenchError, match="'dtd' has nothing to be evaluated on in targets"):
        load_text(tmp_path, text)


def test_protocol_defaults_to_fewshot(tmp_path, smoke_config):
    assert load_text(tmp_path, BASE).suite("s").protocol == "fewshot"
    assert load_text(tmp_path, BASE + 'protocol = "fewshot"\n').suite("s").protocol == "fewshot"
    assert smoke_config.suite("smoke").protocol == smoke_config.suite("coop11").protocol == "fewshot"


def test_invalid_toml_and_missing_file(tmp_path):
    with pytest.raises(BenchError, match="invalid TOML"):
        load_text(tmp_path, "[suites.s\n")
    with pytest.raises(BenchError, match="tasks file not found"):
        config.load(tmp_path / "nope.toml")


def test_paths_expand_env_and_are_relative_to_the_working_directory(tmp_path, monkeypatch):
    monkeypatch.setenv("BENCH_DATA", "/data/coop")
    (tmp_path / "cfg").mkdir()
    (tmp_path / "work").mkdir()
    monkeypatch.chdir(tmp_path / "work")
    cfg = load_text(tmp_path / "cfg", BASE + 'data_root = "${BENCH_DATA:-data}"\nresults_dir = "out"\n')
    assert str(cfg.suite("s").data_root) == "/data/coop"
    assert cfg.suite("s").results_dir == tmp_path / "work" / "out"  # not next to the tasks file
    monkeypatch.delenv("BENCH_DATA")
    assert load_text(tmp_path / "cfg", BASE).suite("s").data_root == tmp_path / "work" / "data"
    assert load_text(tmp_path / "cfg", BASE).suite("s").results_dir == tmp_path / "work" / "results" / "s"


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
    with pytest.raises(BenchError, match="unknown parameter 'template' \\(did you mean 'templates'\\?\\)"):
        resolve_params(suite, "zeroshot", "dtd", 1)


def test_variant_of_unknown_method(tmp_path):
    with pytest.raises(BenchError, match="unknown method 'cop' \\(did you mean 'coop'\\?\\)"):
        load_text(tmp_path, BASE + '[methods.v]\nbase = "cop"\n')


def load_checked(tmp_path, text: str | bytes):
    """Through config.load_config: real method registry (parameter declarations) and dataset cards."""
    path = tmp_path / "tasks.toml"
    path.write_bytes(text if isinstance(text, bytes) else text.encode())
    return config.load_config(path)


@pytest.mark.parametrize("extra, message", [
    ("[methods.clip_adapter]\nratio = 7.0\n", "[methods.clip_adapter]: ratio = 7.0 is out of range [0.0, 1.0]"),
    ("[methods.clip_adapter]\nratio = \"x\"\n",
     "[methods.clip_adapter]: parameter 'ratio' must be a number in [0.0, 1.0], got a string 'x'"),
    ("[methods.coop]\nn_ctx = 0\n", "[methods.coop]: n_ctx = 0 must be ≥ 1"),
    ("[methods.coop]\nn_ctx = 4.0\n", "parameter 'n_ctx' must be a positive integer, got a number 4.0"),
    ("[methods.coop]\nn_ctxx = 4\n", "[methods.coop]: unknown parameter 'n_ctxx' (did you mean 'n_ctx'?)"),
    ("[methods.coop]\nclass_token_position = \"ends\"\n",
     "class_token_position = 'ends' is not allowed (did you mean 'end'?)"),
    ("[methods.linear_probe]\nsolver = \"scipy\"\n", "solver = 'scipy' is not allowed (choose from: sklearn, torch)"),
    ("[methods.mask_tuning]\ninit_sparsity = 0.0\n", "init_sparsity = 0.0 is out of range (0.0, 1.0)"),
    ("[methods.clip_adapter]\naug_scale = [0.5, 2.0]\n",
     "parameter 'aug_scale' must be a list of numbers in [0.0, 1.0], got [0.5, 2.0]"),
    ("[methods.v]\nbase = \"mask_tuning\"\nlam = 0.3\n", "[methods.v]: unknown parameter 'lam'"),
    ("[[methods.rmt.when]]\nshots = [16]\nset = { lam = 1.5 }\n",
     "[[methods.rmt.when]] #1: lam = 1.5 is out of range [0.0, 1.0]"),
    ("[[methods.rmt.when]]\ndatasets = [\"dtdd\"]\nset = { lam = 0.3 }\n",
     "[[methods.rmt.when]] #1: unknown dataset 'dtdd' (did you mean 'dtd'?)"),
    ("[[methods.rmt.when]]\nshots = [\"x\"]\nset = { lam = 0.3 }\n",
     "[[methods.rmt.when]] #1: key 'shots' must be a list of positive integers, got a list ['x']"),
    ("[[methods.rmt.when]]\nshots = [16]\n", "[[methods.rmt.when]] #1: missing required key 'set'"),
    ("[methods.rmt]\nwhen = 3\n", "[methods.rmt]: key 'when' must be a list of tables, got an integer 3"),
    ("[methods.v]\nbase = 3\n", "[methods.v]: key 'base' must be a string, got an integer 3"),
    ("[methods]\ncoop = 3\n", "[methods.coop]: must be a table of parameter overrides, got an integer 3"),
])
def test_method_parameters_are_checked_when_the_file_is_read(tmp_path, extra, message):
    with pytest.raises(BenchError) as info:
        load_checked(tmp_path, BASE + extra)
    assert message in str(info.value) and "\n" not in str(info.value)
    assert str(tmp_path / "tasks.toml") in str(info.value)  # every line says which file


@pytest.mark.parametrize("edit, message", [
    (('datasets = ["dtd"]', "datasets = [1]"), "[suites.s]: key 'datasets' must be a list of strings, got a list [1]"),
    (('datasets = ["dtd"]', "datasets = []"), "[suites.s]: key 'datasets' must not be empty"),
    (('datasets = ["dtd"]', 'datasets = ["dtd", "eurosat", "dtd"]'), "[suites.s]: key 'datasets' lists dtd more than once"),
    (("seeds = [1]", "seeds = [1, 1]"), "key 'seeds' lists 1 more than once"),
    (("shots = [1, 2]", "shots = [true]"), "key 'shots' must be a list of positive integers up to 2147483647, got a list [True]"),
    (('backbone = "b"', "backbone = 3"), "[suites.s]: key 'backbone' must be a string, got an integer 3"),
    (('backbone = "b"', 'backbone = "b"\nprecision = "fp16"'), "precision = 'fp16' is not allowed (did you mean 'fp32'?)"),
    (("[suites.s]\n", "[suites]\ns = 3\n[suites.t]\n"), "[suites.s]: must be a table, got an integer 3"),
    (("[backbones.b]\n", "[backbones]\nb = 3\n[backbones.c]\n"), "[backbones.b]: must be a table, got an integer 3"),
    (("[backbones.b]\n", "default_suite = 1\n[backbones.b]\n"), "key 'default_suite' must be a string, got an integer 1"),
    (("[backbones.b]\n", "suites = 1\n[backbones.b]\n"), "invalid TOML"),
])
def test_bad_types_are_one_line_never_a_traceback(tmp_path, edit, message):
    assert edit[0] in BASE
    with pytest.raises(BenchError) as info:
        load_checked(tmp_path, BASE.replace(*edit, 1))
    assert message in str(info.value) and "\n" not in str(info.value)


def test_a_tasks_file_that_is_not_utf8_is_one_line(tmp_path):
    with pytest.raises(BenchError, match="not UTF-8 text") as info:
        load_checked(tmp_path, BASE.encode() + b"# caf\xe9\n")
    assert "\n" not in str(info.value)


def test_the_repository_tasks_file_passes_every_check(smoke_config):
    entry = smoke_config.suite("smoke").method_entries["rmt"]
    assert entry.overrides[-1].params == {"lam": 0.3} and entry.overrides[-1].shots == (16,)
