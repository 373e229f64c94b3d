"""Config validation: schema defaults and errors that name the key and the allowed values."""

import copy

import pytest
import yaml

from rdflow import RdflowError
from rdflow.config import SCHEMA
from rdflow.study import validate

from conftest import REPO

BASE = {
    "datasets": {"kodak": {"kind": "kodak"}},
    "codecs": {
        "hp": {"kind": "learned", "architecture": "bmshj2018-hyperprior", "qualities": [1, 8]},
        "jpeg": {"kind": "jpeg", "qualities": [50]},
    },
}


def cfg(**changes):
    c = copy.deepcopy(BASE)
    for path, value in changes.items():
        node = c
        *head, last = path.split("__")
        for k in head:
            node = node.setdefault(k, {})
        node[last] = value
    return c


def test_defaults_are_filled():
    c = validate(cfg())
    assert c["device"] == "auto"
    assert c["metrics"] == ["psnr_rgb", "ms_ssim"]
    assert c["datasets"]["kodak"]["base_url"].startswith("http://r0k.us/")
    assert c["codecs"]["hp"]["weights"] == "pretrained"
    assert c["codecs"]["hp"]["metric"] == "mse"
    assert c["weights"]["base_url"] is None


def test_repository_config_is_valid():
    validate(yaml.safe_load((REPO / "config.yaml").read_text()))


def test_schema_documents_every_key():
    schema = yaml.safe_load(SCHEMA.read_text())

    def walk(node, path):
        for k, v in (node.get("properties") or {}).items():
            assert "description" in v, f"{path}.{k} has no description"
            walk(v, f"{path}.{k}")
        if isinstance(node.get("additionalProperties"), dict):
            walk(node["additionalProperties"], f"{path}.*")

    walk(schema, "config")


def test_unknown_codec_kind():
    with pytest.raises(RdflowError, match=r"codecs\.x\.kind: unknown codec kind 'h266'.*jpeg"):
        validate(cfg(codecs__x={"kind": "h266", "qualities": [1]}))


def test_unknown_architecture_lists_known():
    with pytest.raises(RdflowError, match=r"codecs\.hp\.architecture.*'elic2022'.*cheng2020-anchor"):
        validate(cfg(codecs__hp__architecture="elic2022"))


@pytest.mark.parametrize("arch,q,allowed", [
    ("cheng2020-anchor", 7, "1–6"), ("cheng2020-attn", 0, "1–6"),
    ("bmshj2018-factorized", 9, "1–8"), ("mbt2018", 9, "1–8"), ("mbt2018-mean", 0, "1–8"),
])
def test_quality_out_of_range_names_key_and_range(arch, q, allowed):
    c = cfg(codecs__hp={"kind": "learned", "architecture": arch, "qualities": [1, q]})
    with pytest.raises(RdflowError, match=rf"codecs\.hp\.qualities: \[{q}\].*{arch}.*{allowed}"):
        validate(c)


def test_classical_quality_range():
    with pytest.raises(RdflowError, match=r"codecs\.jpeg\.qualities: \[101\].*1–100"):
        validate(cfg(codecs__jpeg__qualities=[50, 101]))


def test_schema_type_error_names_key():
    with pytest.raises(RdflowError, match="qualities"):
        validate(cfg(codecs__jpeg__qualities="50"))


def test_bad_device():
    with pytest.raises(RdflowError, match="device"):
        validate(cfg(device="tpu"))


def test_unknown_key_in_codec_is_refused():
    with pytest.raises(RdflowError, match="qualitys"):
        validate(cfg(codecs__jpeg__qualitys=[1]))


def test_checkpoint_without_path():
    with pytest.raises(RdflowError, match=r"codecs\.hp\.checkpoint"):
        validate(cfg(codecs__hp__weights="checkpoint"))


def test_local_dataset_needs_path():
    with pytest.raises(RdflowError, match=r"datasets\.mine\.path"):
        validate(cfg(datasets__mine={"kind": "local"}))


def test_unknown_kodak_image():
    with pytest.raises(RdflowError, match="kodim99"):
        validate(cfg(datasets__kodak__images=["kodim01", "kodim99"]))


def test_empty_codecs():
    c = cfg()
    c["codecs"] = {}
    with pytest.raises(RdflowError, match="codecs is empty"):
        validate(c)


def test_defaults_belong_to_the_entry_kind():
    """The configuration on the report's front page: each entry with its own kind's defaults."""
    cfg = validate({"codecs": {
        "j": {"kind": "jpeg", "qualities": [50]},
        "w": {"kind": "webp", "qualities": [50]},
        "z": {"kind": "learned", "architecture": "bmshj2018-factorized", "qualities": [1]},
        "r": {"kind": "learned", "architecture": "bmshj2018-factorized", "weights": "random", "qualities": [1]}},
        "datasets": {"k": {"kind": "kodak"}}})
    c = cfg["codecs"]
    assert c["j"] == {"kind": "jpeg", "qualities": [50]}
    assert c["w"]["method"] == 4 and "weights" not in c["w"] and "metric" not in c["w"]
    assert c["z"]["weights"] == "pretrained" and c["z"]["metric"] == "mse" and "seed" not in c["z"]
    assert c["r"]["seed"] == 0
    assert cfg["datasets"]["k"]["base_url"].startswith("http://r0k.us/")


def test_unknown_keys_get_the_nearest_one_in_one_line():
    for cfg, message in (({"metrcs": ["psnr_rgb"]}, "config key metrcs is not known at the top level: did you mean `metrics`?"),
                         ({"codecs": {"j": {"kind": "jpeg", "qualitys": [5]}}},
                          "config key codecs.j.qualitys is not known under codecs.j: did you mean `qualities`?"),
                         ({"complexty": {}}, "did you mean `complexity`?")):
        with pytest.raises(RdflowError) as err:
            validate(cfg)
        assert message in str(err.value) and str(err.value).count("\n") < 3
