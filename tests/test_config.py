"""rnnkit.config: dotted overrides read as YAML, one ConfigError per bad config naming the key and the fix."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml

from rnnkit.config import apply_overrides, dump_yaml, load_config, parse_override, read_yaml, validate
from rnnkit.errors import ConfigError
from rnnkit.run import load_run_config, run_config_type
from rnnkit.tasks import forecast, get_task
from rnnkit.train.options import TrainConfig

RunConfig = run_config_type(get_task("forecast"))  # the run config of configs/sine.yaml's task

CONFIGS = Path(__file__).resolve().parents[1] / "configs"
SINE = CONFIGS / "sine.yaml"


def sine_data(*overrides: str) -> dict:
    """configs/sine.yaml as a dict, with dotted overrides applied."""
    return apply_overrides(read_yaml(SINE), overrides)


# ---------------------------------------------------------------- parse_override


@pytest.mark.parametrize(
    ("text", "keys", "value"),
    [
        ("train.epochs=5", ["train", "epochs"], 5),
        ("train.optimizer.lr=0.0003", ["train", "optimizer", "lr"], 0.0003),
        ("train.optimizer.lr=3e-4", ["train", "optimizer", "lr"], 0.0003),  # the docstring's own example
        ("train.optimizer.lr=3.0e-4", ["train", "optimizer", "lr"], 0.0003),
        ("x=3e-4", ["x"], 0.0003),  # YAML 1.2 floats: PyYAML alone reads "3e-4" as a string
        ("x=1e3", ["x"], 1000.0),
        ("x=-2.5E-3", ["x"], -0.0025),
        ("x=+1e+2", ["x"], 100.0),
        ("x=.5", ["x"], 0.5),
        ("x=1_000", ["x"], 1000),
        ("x=1.2.3", ["x"], "1.2.3"),  # not a number: stays a string
        ("x=e3", ["x"], "e3"),
        ("x=1e", ["x"], "1e"),
        ("x='3e-4'", ["x"], "3e-4"),  # quoted: a string
        ("train.shuffle=false", ["train", "shuffle"], False),
        ("train.amp=true", ["train", "amp"], True),
        ("train.optimizer.betas=[0.8, 0.9]", ["train", "optimizer", "betas"], [0.8, 0.9]),
        ("train.max_steps=null", ["train", "max_steps"], None),
        ("train.device=", ["train", "device"], None),
        ("out_dir=runs/x", ["out_dir"], "runs/x"),
        ("data.synthetic_options={points: 50}", ["data", "synthetic_options"], {"points": 50}),
        (" train . seed = 7", ["train", "seed"], 7),
    ],
)
def test_parse_override_reads_the_value_as_yaml(text, keys, value):
    got_keys, got = parse_override(text)
    assert got_keys == keys
    assert got == value
    assert type(got) is type(value)


@pytest.mark.parametrize("text", ["train.lr", "=3", "train..lr=3", ".lr=3", "train.=3", ""])
def test_parse_override_refuses_bad_syntax(text):
    with pytest.raises(
        ConfigError, match=r"must look like key=value with a dotted key, e\.g\. train\.lr=3e-4"
    ):
        parse_override(text)


@pytest.mark.parametrize("text", ["train.epochs=[1", "train.epochs=:", "train.epochs={a"])
def test_parse_override_refuses_invalid_yaml_values(text):
    with pytest.raises(ConfigError, match=r"the value is not valid YAML"):
        parse_override(text)


# ---------------------------------------------------------------- apply_overrides


def test_apply_overrides_sets_nested_keys_and_creates_sections_without_touching_the_input():
    data = {"train": {"epochs": 3, "optimizer": {"lr": 0.1}}, "out_dir": "a"}
    result = apply_overrides(
        data, ["train.optimizer.lr=0.03", "train.schedule.name=cosine", "new.deep.key=1", "out_dir=b"]
    )
    assert result == {
        "train": {"epochs": 3, "optimizer": {"lr": 0.03}, "schedule": {"name": "cosine"}},
        "out_dir": "b",
        "new": {"deep": {"key": 1}},
    }
    assert data == {"train": {"epochs": 3, "optimizer": {"lr": 0.1}}, "out_dir": "a"}  # a copy


def test_apply_overrides_later_override_wins():
    assert apply_overrides({}, ["train.epochs=1", "train.epochs=2"]) == {"train": {"epochs": 2}}


@pytest.mark.parametrize(
    ("override", "where"),
    [
        ("out_dir.x=1", "out_dir"),
        ("train.epochs.x=1", "train.epochs"),
        ("train.epochs.x.y=1", "train.epochs"),
    ],
)
def test_apply_overrides_into_a_value_is_an_error(override, where):
    data = {"out_dir": "runs", "train": {"epochs": 3}}
    with pytest.raises(ConfigError, match=rf"override '{override}': {where} is a value, not a section"):
        apply_overrides(data, [override])


def test_apply_overrides_passes_bad_syntax_on():
    with pytest.raises(ConfigError, match=r"override 'train\.lr' must look like key=value"):
        apply_overrides({}, ["train.lr"])


# ---------------------------------------------------------------- validate


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("outdir=x", r"unknown key 'outdir'; did you mean 'out_dir'\?"),
        ("train.epoch=3", r"unknown key 'train\.epoch'; did you mean 'train\.epochs'\?"),
        (
            "train.optimizer.lrr=0.1",
            r"unknown key 'train\.optimizer\.lrr'; did you mean 'train\.optimizer\.lr'\?",
        ),
        (
            "train.schedule.nam=cosine",
            r"unknown key 'train\.schedule\.nam'; did you mean 'train\.schedule\.name'\?",
        ),
        (
            "train.early_stopping.patiense=3",
            r"unknown key 'train\.early_stopping\.patiense'; "
            r"did you mean 'train\.early_stopping\.patience'\?",
        ),
        ("data.lookbak=3", r"unknown key 'data\.lookbak'; did you mean 'data\.lookback'\?"),
    ],
)
def test_validate_unknown_key_names_the_dotted_key_and_the_nearest(override, message):
    with pytest.raises(ConfigError, match=rf"^sine\.yaml: {message}$"):
        validate(RunConfig, sine_data(override), source="sine.yaml")


def test_validate_unknown_key_without_a_near_one_lists_the_valid_keys():
    with pytest.raises(
        ConfigError,
        match=r"unknown key 'zzzz'; valid keys: \['data', 'evaluate', 'model', 'out_dir', 'task', 'train'\]",
    ):
        validate(RunConfig, sine_data("zzzz=1"))


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("train.epochs=abc", r"train\.epochs: Input should be a valid integer.*\(got 'abc'\)"),
        ("train.epochs=1.5", r"train\.epochs: .*fractional part \(got 1\.5\)"),
        ("train.shuffle=maybe", r"train\.shuffle: Input should be a valid boolean.*\(got 'maybe'\)"),
        ("train.optimizer.lr=-1", r"train\.optimizer\.lr: Input should be greater than 0 \(got -1\)"),
        ("data.lookback=0", r"data\.lookback: Input should be greater than 0 \(got 0\)"),
        ("model=3", r"model: Input should be a valid dictionary \(got 3\)"),
    ],
)
def test_validate_wrong_type_names_the_key_and_the_value(override, message):
    with pytest.raises(ConfigError, match=rf"^config: {message}$"):
        validate(RunConfig, sine_data(override))


@pytest.mark.parametrize(
    ("override", "key"),
    [
        ("data.synthetic_options.points=abc", "data.synthetic_options.points"),  # dict[str, float | int]
        ("data.test=[1]", "data.test"),  # float | int | str
        ("data.validation={a: 1}", "data.validation"),
    ],
)
def test_validate_wrong_type_inside_a_union_names_the_plain_dotted_key(override, key):
    """Pydantic's union branch names (``.float``, ``.int``, ``.str``) are not config keys."""
    with pytest.raises(ConfigError) as caught:
        validate(RunConfig, sine_data(override))
    message = str(caught.value)
    assert message.startswith(f"config: {key}: Input should be a valid "), message
    assert not re.search(rf"{re.escape(key)}\.(float|int|str)", message), message
    for part in message.removeprefix("config: ").split("; "):
        assert part.startswith(f"{key}: "), message
    assert len(set(message.split("; "))) == len(message.split("; ")), "repeated parts"


def test_validate_the_old_split_keys_are_unknown_and_the_new_ones_listed():
    with pytest.raises(ConfigError, match=r"unknown key 'data\.test_fraction'; valid keys: \[.*'test'.*\]"):
        validate(RunConfig, sine_data("data.test_fraction=0.2"))
    with pytest.raises(
        ConfigError,
        match=r"^config: unknown key 'data\.validation_fraction'; did you mean 'data\.validation'\?$",
    ):
        validate(RunConfig, sine_data("data.validation_fraction=0.1"))


@pytest.mark.parametrize(
    ("overrides", "test", "validation"),
    [
        ([], 0.2, 0.1),  # configs/sine.yaml: fractions of the rows
        (["data.test=20", "data.validation=10"], 20, 10),  # row counts
        (["data.test='2021-01-01'", "data.validation='2020-07-01'"], "2021-01-01", "2020-07-01"),
    ],
)
def test_validate_split_parts_keep_their_kind(overrides, test, validation):
    data = validate(RunConfig, sine_data(*overrides)).data
    assert (data.test, data.validation) == (test, validation)
    assert (type(data.test), type(data.validation)) == (type(test), type(validation))


@pytest.mark.parametrize("missing", ["task", "data"])
def test_validate_missing_required_key(missing):
    data = sine_data()
    del data[missing]
    with pytest.raises(ConfigError, match=rf"^config: missing key '{missing}'$"):
        validate(RunConfig, data)


def test_validate_reports_every_error_in_one_message():
    with pytest.raises(ConfigError) as caught:
        validate(RunConfig, sine_data("train.epoch=3", "data.lookback=0"))
    assert "'train.epoch'" in str(caught.value) and "data.lookback" in str(caught.value)
    assert "\n" not in str(caught.value)


@pytest.mark.parametrize(
    "overrides",
    [
        ["data.path=x.csv"],
        ["data.dataset=seattle_weather"],
        ["data.synthetic=null", "data.path=x.csv", "data.dataset=seattle_weather"],
    ],
)
def test_validate_model_validator_errors_name_the_section(overrides):
    """A section's own check reads "data: <message>": no "Value error, " and no empty key."""
    with pytest.raises(
        ConfigError,
        match=r"^config: data: set only one of data\.path, data\.dataset and data\.synthetic$",
    ):
        validate(RunConfig, sine_data(*overrides))


@pytest.mark.parametrize(
    ("load", "message"),
    [
        (
            lambda: validate(TrainConfig, {"epochs": None}, source="train"),
            r"^train: set train\.epochs or train\.max_steps",
        ),
        (
            lambda: load_run_config(SINE, ["model.cell=lstm"]),
            rf"^{re.escape(str(SINE))} with override\(s\) 'model\.cell=lstm': "
            r"nonlinearity='relu' applies to cell='rnn' only, got cell='lstm'",
        ),
    ],
    ids=["train-config", "model-config"],
)
def test_validate_whole_config_errors_have_no_empty_key(load, message):
    """A model validator's error has an empty location; the message must not read 'model: : ...'."""
    with pytest.raises(ConfigError, match=message) as caught:
        load()
    assert "Value error" not in str(caught.value)


# ---------------------------------------------------------------- read_yaml


def test_read_yaml_missing_file(tmp_path):
    with pytest.raises(ConfigError, match=r"config file '.*nope\.yaml' does not exist"):
        read_yaml(tmp_path / "nope.yaml")


@pytest.mark.parametrize(
    ("text", "where"),
    [
        (
            "task: forecast\ndata: [1, 2\n",
            r"at line 3, column 1: expected ',' or '\]', but got '<stream end>'",
        ),
        ("task: forecast\n  data: 1\n", r"at line 2, column 7: mapping values are not allowed here"),
    ],
)
def test_read_yaml_invalid_yaml_is_one_line_with_the_place(tmp_path, text, where):
    path = tmp_path / "bad.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError, match=rf"^{re.escape(str(path))} is not valid YAML {where}$") as caught:
        read_yaml(path)
    assert "\n" not in str(caught.value)


def test_read_yaml_reads_exponent_floats_as_floats(tmp_path):
    path = tmp_path / "floats.yaml"
    path.write_text("a: 3e-4\nb: 1E3\nc: 1.2.3\nd: 7\ne: '3e-4'\nf: 2.5e+1\n")
    data = read_yaml(path)
    assert data == {"a": 0.0003, "b": 1000.0, "c": "1.2.3", "d": 7, "e": "3e-4", "f": 25.0}
    assert [type(data[k]) for k in "abcdef"] == [float, float, str, int, str, float]


@pytest.mark.parametrize(("text", "kind"), [("- 1\n- 2\n", "list"), ("just text\n", "str"), ("3\n", "int")])
def test_read_yaml_top_level_must_be_a_mapping(tmp_path, text, kind):
    path = tmp_path / "top.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError, match=rf"top\.yaml must hold a mapping of keys to values, got {kind}$"):
        read_yaml(path)


def test_read_yaml_empty_file_is_an_empty_mapping(tmp_path):
    path = tmp_path / "empty.yaml"
    path.write_text("# nothing\n")
    assert read_yaml(path) == {}


# ---------------------------------------------------------------- load_config, dump_yaml, load_run_config


def test_dump_yaml_round_trips_the_sine_run_config(tmp_path):
    config = load_config(RunConfig, SINE)
    path = dump_yaml(config, tmp_path / "config.yaml")
    assert load_config(RunConfig, path) == config
    written = yaml.safe_load(path.read_text())
    assert written["train"]["optimizer"] == {**config.train.optimizer.model_dump(mode="json")}
    assert written["train"]["epochs"] == 200  # every default filled in, the file's values kept
    assert written["train"]["nan_policy"] == "raise"


def test_dump_yaml_round_trips_a_resolved_run_config(tmp_path):
    config = load_run_config(SINE, ["train.optimizer.lr=0.002", "train.optimizer.betas=[0.8, 0.9]"])
    again = load_run_config(dump_yaml(config, tmp_path / "config.yaml"))
    assert again == config
    assert again.train.optimizer.betas == (0.8, 0.9)


def test_load_config_applies_overrides_and_names_the_file(tmp_path):
    config = load_config(RunConfig, SINE, ["train.epochs=3", "train.optimizer.lr=3e-4", "out_dir=elsewhere"])
    assert (config.train.epochs, config.train.optimizer.lr, config.out_dir) == (3, 0.0003, "elsewhere")
    assert type(config.train.optimizer.lr) is float
    in_file = apply_overrides_to_file(SINE, tmp_path, "train.lrr=0.1")
    with pytest.raises(ConfigError, match=rf"^{re.escape(str(in_file))}: unknown key 'train\.lrr'"):
        load_config(RunConfig, in_file)
    # a bad override is named as such, never blamed on the file
    with pytest.raises(ConfigError, match=r"^override 'train\.lrr=0\.1': unknown key 'train\.lrr'"):
        load_config(RunConfig, SINE, ["train.lrr=0.1"])


def test_load_run_config_sine():
    config = load_run_config(SINE)
    assert config.task == "forecast"
    assert config.model == {"name": "forecaster", "cell": "rnn", "nonlinearity": "relu", "hidden_size": 50}
    assert config.data.synthetic == "sine" and config.data.lookback == 10
    assert (config.data.test, config.data.validation, config.data.targets) == (0.2, 0.1, ["value"])
    assert (config.train.epochs, config.train.batch_size, config.train.optimizer.lr) == (200, 64, 0.01)


def test_load_run_config_temperature():
    config = load_run_config(CONFIGS / "temperature.yaml", ["train.epochs=2"])
    assert config.model == {"name": "forecaster", "cell": "lstm", "hidden_size": 32}
    assert config.data.scaler == "minmax"
    assert config.train.early_stopping.patience == 5
    assert config.train.epochs == 2


def test_load_run_config_catches_unknown_model_keys_before_data_loads(tmp_path):
    """The data file does not exist: a DataError would mean the data loaded first."""
    overrides = ["data.synthetic=null", f"data.path={tmp_path / 'missing.csv'}", "model.hiden_size=3"]
    with pytest.raises(
        ConfigError,
        match=r"^override 'model\.hiden_size=3': unknown key 'model\.hiden_size'; "
        r"did you mean 'model\.hidden_size'\?$",
    ):
        load_run_config(SINE, overrides)
    in_file = apply_overrides_to_file(SINE, tmp_path, "model.hiden_size=3")
    with pytest.raises(ConfigError, match=rf"^{re.escape(str(in_file))}: unknown key 'model\.hiden_size'"):
        load_run_config(in_file)


@pytest.mark.parametrize(
    ("key", "value"), [("horizon", 5), ("lookback", 3), ("output_size", 2), ("num_past", 1)]
)
def test_load_run_config_refuses_model_keys_the_data_fixes(key, value):
    fixed = {"horizon": 1, "lookback": 10, "output_size": 1, "num_past": 0}[key]
    with pytest.raises(
        ConfigError,
        match=rf"^override 'model\.{key}={value}': model\.{key} is fixed by the data section to {fixed}, "
        rf"got {value}: drop model\.{key}$",
    ):
        load_run_config(SINE, [f"model.{key}={value}"])


def test_load_run_config_accepts_model_keys_equal_to_what_the_data_fixes():
    config = load_run_config(SINE, ["model.lookback=10", "model.horizon=1"])
    assert (config.model["lookback"], config.model["horizon"]) == (10, 1)


def test_unknown_synthetic_option_is_a_clear_error():
    """synthetic_options is a free mapping in the config; the generator's signature decides."""
    config = load_run_config(SINE, ["data.synthetic_options.bogus=1"])
    with pytest.raises(
        ConfigError,
        match=r"^data\.synthetic_options: unknown option\(s\) \['bogus'\] for 'sine'; "
        r"valid options are \['noise', 'points', 'seed'\]$",
    ):
        forecast.prepare(config.data)


def test_load_run_config_catches_bad_model_values_and_names():
    with pytest.raises(
        ConfigError,
        match=r"^override 'model\.hidden_size=-1': model\.hidden_size: "
        r"Input should be greater than 0 \(got -1\)",
    ):
        load_run_config(SINE, ["model.hidden_size=-1"])
    with pytest.raises(ConfigError, match=r"unknown model 'foo'; expected one of \[.*'forecaster'.*\]"):
        load_run_config(SINE, ["model.name=foo"])


def test_load_run_config_names_an_unknown_task_and_where_it_was_set(tmp_path):
    with pytest.raises(ConfigError, match=r"^override 'task=nope': task: unknown task 'nope'; expected"):
        load_run_config(SINE, ["task=nope"])
    in_file = apply_overrides_to_file(SINE, tmp_path, "task=forecst")
    with pytest.raises(ConfigError, match=rf"^{re.escape(str(in_file))}: task: .*Did you mean 'forecast'\?"):
        load_run_config(in_file)


def test_relative_data_paths_are_read_from_the_config_files_folder(tmp_path, monkeypatch):
    """A config names its data relative to itself, wherever rnnkit runs; an override, from the shell."""
    folder = tmp_path / "project"
    (folder / "data").mkdir(parents=True)
    (folder / "data" / "series.csv").write_text("value\n" + "\n".join(str(i % 7) for i in range(60)))
    config_file = folder / "run.yaml"
    config_file.write_text("task: forecast\ndata: {path: data/series.csv, lookback: 5}\n")
    monkeypatch.chdir(tmp_path)  # not the config's folder
    config = load_run_config(config_file)
    assert config.data.path == str(folder / "data" / "series.csv")
    assert len(forecast.prepare(config.data).series[0].targets) == 60
    assert load_run_config(config_file, ["data.path=elsewhere.csv"]).data.path == "elsewhere.csv"


def test_load_run_config_missing_file(tmp_path):
    with pytest.raises(ConfigError, match=r"config file '.*nope\.yaml' does not exist"):
        load_run_config(tmp_path / "nope.yaml")


def apply_overrides_to_file(path: Path, tmp_path: Path, *overrides: str) -> Path:
    """A copy of the config at ``path`` with ``overrides`` written into the file itself."""
    out = tmp_path / f"edited-{path.name}"
    out.write_text(yaml.safe_dump(apply_overrides(read_yaml(path), overrides)))
    return out


IF_MISSING = """
task: forecast
data: {synthetic: sine, lookback: 10}
model: {hidden_size: 32, num_layers: 2}
train: {epochs: 3}
if_missing:
  path: pretrained/bundle
  hint: make pretrained makes it
  model: {hidden_size: 8, num_layers: null}
  train: {epochs: 1}
"""


def test_if_missing_keys_apply_only_while_the_file_is_missing(tmp_path):
    (tmp_path / "run.yaml").write_text(IF_MISSING)
    config = load_run_config(tmp_path / "run.yaml")
    assert config.model["hidden_size"] == 8 and "num_layers" not in config.model  # null removes the key
    assert config.train.epochs == 1
    assert config.notes == [
        f"{tmp_path / 'pretrained' / 'bundle'} is missing: run.yaml's if_missing keys apply "
        "(make pretrained makes it)"
    ]
    (tmp_path / "pretrained" / "bundle").mkdir(parents=True)
    config = load_run_config(tmp_path / "run.yaml")
    assert config.model["hidden_size"] == 32 and config.model["num_layers"] == 2 and config.train.epochs == 3
    assert "if_missing" not in config.model_dump()


@pytest.mark.parametrize(
    "section, message",
    [("if_missing: {hint: x}", r"if_missing must be a mapping with a path"),
     ("if_missing: {path: x, modle: {}}", r"if_missing.modle: expected path, hint, data, model, train")],
)  # fmt: skip
def test_a_bad_if_missing_section_is_named(tmp_path, section, message):
    (tmp_path / "run.yaml").write_text("task: forecast\ndata: {synthetic: sine}\n" + section)
    with pytest.raises(ConfigError, match=message):
        load_run_config(tmp_path / "run.yaml")
