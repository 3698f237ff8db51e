"""Resource configs and the registry: labels, user overrides, aliases, schema merge."""

from __future__ import annotations

import json
import logging

import pytest

from rp_executor.exceptions import BadParameter, DoesNotExist
from rp_executor.resource_config import ResourceConfig, ResourceRegistry

# the configs shipped in rp_executor/configs/
BUILTIN = ["local.localhost", "local.localhost_funcs", "lsf.template", "pbspro.template", "slurm.localhost"]


@pytest.fixture
def home(tmp_path, monkeypatch):
    """An empty home directory, so that the developer's own configs do not leak in."""
    monkeypatch.setenv("HOME", str(tmp_path))
    return tmp_path


def write_json(path, data):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data))
    return path


SLURM = {
    "description": "a slurm cluster",
    "schemas": ["ssh", "local"],
    "ssh": {"job_manager_endpoint": "slurm+ssh://login.example.org/",
            "filesystem_endpoint": "sftp://login.example.org/"},
    "local": {"job_manager_endpoint": "slurm://localhost/",
              "filesystem_endpoint": "file://localhost/"},
    "lrms": "SLURM",
    "cores_per_node": 48,
    "provider": "SlurmProvider",
    "provider_args": {"partition": "normal"},
}


# -- ResourceConfig ------------------------------------------------------------------


def test_config_fills_unset_keys_with_defaults():
    rc = ResourceConfig("x.y", {})
    assert rc.schemas == ["local"]
    assert rc.lrms == "local"
    assert rc.agent_scheduler == "CONTINUOUS"
    assert rc.task_launch_method == "FORK"
    assert rc.mpi_launch_method == "MPIRUN"
    assert rc["provider_args"] == {}


def test_config_is_readable_as_attributes_and_keys():
    rc = ResourceConfig("site.cluster", SLURM)
    assert rc.label == rc["label"] == "site.cluster"
    assert rc.cores_per_node == rc["cores_per_node"] == 48
    assert rc.provider_args == {"partition": "normal"}


def test_config_setting_a_key_is_validated():
    rc = ResourceConfig("x.y", {})
    rc.cores_per_node = 8
    assert rc["cores_per_node"] == 8
    with pytest.raises(BadParameter, match="gpus_per_node"):
        rc["gpus_per_node"] = -1
    assert rc.gpus_per_node == 0


def test_config_unknown_attribute_suggests_the_close_key():
    rc = ResourceConfig("x.y", {})
    with pytest.raises(AttributeError, match="cores_per_node"):
        rc.cores_per_nod
    with pytest.raises(KeyError):
        rc["cores_per_nod"]


def test_config_does_not_share_state_with_the_dict_it_was_given():
    cfg = {"provider_args": {"a": 1}}
    rc = ResourceConfig("x.y", cfg)
    cfg["provider_args"]["a"] = 2
    assert rc.provider_args == {"a": 1}


def test_config_copy_is_independent():
    rc = ResourceConfig("site.cluster", SLURM)
    clone = rc.copy()
    clone["provider_args"]["partition"] = "debug"
    clone.cores_per_node = 1
    assert rc == ResourceConfig("site.cluster", SLURM)
    assert clone != rc


@pytest.mark.parametrize("key,value", [
    ("schemas", []), ("schemas", "local"), ("cores_per_node", "48"),
    ("provider_args", ["a"]), ("mandatory_args", "project"),
    ("local", "fork://localhost/"),
])
def test_config_with_a_wrongly_typed_key_is_refused(key, value):
    with pytest.raises(BadParameter, match=key):
        ResourceConfig("x.y", {key: value})


def test_schema_get_merges_the_default_schema_to_the_top_level():
    merged = ResourceConfig("site.cluster", SLURM).get()
    assert merged["job_manager_endpoint"] == "slurm+ssh://login.example.org/"
    assert merged["filesystem_endpoint"] == "sftp://login.example.org/"
    assert merged["cores_per_node"] == 48
    assert merged["label"] == "site.cluster"


def test_schema_get_merges_the_chosen_schema():
    merged = ResourceConfig("site.cluster", SLURM).get("local")
    assert merged["job_manager_endpoint"] == "slurm://localhost/"


def test_schema_get_with_unknown_schema_names_the_known_ones():
    with pytest.raises(BadParameter, match="gsissh") as exc:
        ResourceConfig("site.cluster", SLURM).get("gsissh")
    assert "['ssh', 'local']" in str(exc.value)
    assert exc.value.attribute == "schema"


def test_from_file_labels_entries_site_dot_key(tmp_path):
    path = write_json(tmp_path / "resource_example.json",
                      {"cluster": SLURM, "laptop": {"description": "mine"}})
    configs = ResourceConfig.from_file(path)
    assert sorted(rc.label for rc in configs) == ["example.cluster", "example.laptop"]


def test_from_file_skips_rp_style_comment_lines(tmp_path):
    path = tmp_path / "resource_commented.json"
    path.write_text('{\n  # a comment as in RP 0.50 configs\n  "box": {"lrms": "FORK"}\n}\n')
    [rc] = ResourceConfig.from_file(path)
    assert rc.lrms == "FORK"


def test_from_file_refuses_a_misnamed_file(tmp_path):
    path = write_json(tmp_path / "cluster.json", {"c": {}})
    with pytest.raises(BadParameter, match="resource_<site>.json"):
        ResourceConfig.from_file(path)


def test_from_file_refuses_invalid_json_naming_the_file(tmp_path):
    path = tmp_path / "resource_broken.json"
    path.write_text("{not json")
    with pytest.raises(BadParameter, match="resource_broken.json"):
        ResourceConfig.from_file(path)


# -- ResourceRegistry ------------------------------------------------------------------


def test_registry_lists_the_builtin_localhost(home):
    assert "local.localhost" in ResourceRegistry().list()


def test_builtin_localhost_runs_here_with_the_local_provider(home):
    cfg = ResourceRegistry().get("local.localhost")
    assert cfg["description"] == "this machine"
    assert cfg["schemas"] == ["local"]
    assert cfg["job_manager_endpoint"] == "fork://localhost/"
    assert cfg["filesystem_endpoint"] == "file://localhost/"
    assert cfg["lrms"] == "local"
    assert cfg["agent_scheduler"] == "CONTINUOUS"
    assert cfg["task_launch_method"] == "FORK"
    assert cfg["mpi_launch_method"] == "MPIRUN"
    assert cfg["cores_per_node"] is None
    assert cfg["gpus_per_node"] == 0
    assert cfg["default_remote_workdir"] == "$PWD"
    assert cfg["provider"] == "LocalProvider"
    assert cfg["provider_args"] == {}
    assert cfg["python_interpreter"] is None


def test_registry_get_returns_a_deep_copy(home):
    reg = ResourceRegistry()
    cfg = reg.get("local.localhost")
    cfg["provider_args"]["nodes_per_block"] = 99
    cfg["local"]["job_manager_endpoint"] = "changed://"
    cfg["lrms"] = "SLURM"
    again = reg.get("local.localhost")
    assert again["provider_args"] == {}
    assert again["local"]["job_manager_endpoint"] == "fork://localhost/"
    assert again["lrms"] == "local"


def test_user_config_overrides_builtin_values_and_keeps_the_rest(home):
    write_json(home / ".radical/pilot/configs/resource_local.json",
               {"localhost": {"cores_per_node": 4,
                              "local": {"filesystem_endpoint": "file://localhost/scratch"}}})
    cfg = ResourceRegistry().get("local.localhost")
    assert cfg["cores_per_node"] == 4
    assert cfg["filesystem_endpoint"] == "file://localhost/scratch"
    assert cfg["job_manager_endpoint"] == "fork://localhost/"
    assert cfg["description"] == "this machine"


def test_rp_executor_user_dir_is_loaded_after_radical_pilot_dir(home):
    write_json(home / ".radical/pilot/configs/resource_local.json",
               {"localhost": {"cores_per_node": 4}})
    write_json(home / ".rp_executor/configs/resource_local.json",
               {"localhost": {"cores_per_node": 8}})
    assert ResourceRegistry().get("local.localhost")["cores_per_node"] == 8


def test_user_config_adds_new_resources(home):
    write_json(home / ".rp_executor/configs/resource_site.json", {"cluster": SLURM})
    assert ResourceRegistry().list() == sorted([*BUILTIN, "site.cluster"])


def test_alias_resolves_to_its_label_with_a_warning(home, caplog):
    write_json(home / ".rp_executor/configs/resource_aliases.json",
               {"localhost": "local.localhost"})
    reg = ResourceRegistry()
    with caplog.at_level(logging.WARNING, logger="rp_executor.resource_config"):
        cfg = reg.get("localhost")
    assert cfg["label"] == "local.localhost"
    assert "alias" in caplog.text
    assert "localhost" not in reg.list()
    assert "localhost" in reg


def test_alias_added_in_code_resolves(home):
    reg = ResourceRegistry()
    reg.add_alias("here", "local.localhost")
    assert reg.get("here")["label"] == "local.localhost"


def test_unknown_resource_lists_known_ones_and_suggests_the_close_match(home):
    with pytest.raises(DoesNotExist) as exc:
        ResourceRegistry().get("local.localhots")
    msg = str(exc.value)
    assert "Resource 'local.localhots' is not known" in msg
    assert "known resources: local.localhost" in msg
    assert "did you mean 'local.localhost'" in msg
    assert isinstance(exc.value, LookupError)


def test_alias_to_a_missing_label_is_reported(home):
    reg = ResourceRegistry()
    reg.add_alias("gone", "site.gone")
    with pytest.raises(DoesNotExist, match="site.gone"):
        reg.get("gone")


def test_add_from_file_registers_every_entry(home, tmp_path):
    path = write_json(tmp_path / "cfgs/resource_example.json", {"cluster": SLURM})
    reg = ResourceRegistry()
    assert reg.add(path) == ["example.cluster"]
    assert reg.get("example.cluster")["provider"] == "SlurmProvider"
    assert reg.add(str(path)) == ["example.cluster"]


def test_add_object_registers_a_copy(home):
    reg = ResourceRegistry()
    rc = ResourceConfig("mine.box", {"cores_per_node": 2})
    assert reg.add(rc) == ["mine.box"]
    rc.cores_per_node = 64
    assert reg.get("mine.box")["cores_per_node"] == 2
    assert reg.list() == sorted([*BUILTIN, "mine.box"])


def test_add_replaces_a_known_label(home):
    reg = ResourceRegistry()
    reg.add(ResourceConfig("local.localhost", {"description": "replaced"}))
    assert reg.get("local.localhost")["description"] == "replaced"


def test_add_refuses_other_things(home):
    with pytest.raises(BadParameter, match="ResourceConfig or the path"):
        ResourceRegistry().add({"cores_per_node": 1})


def test_registry_get_merges_the_requested_schema(home):
    reg = ResourceRegistry()
    reg.add(ResourceConfig("site.cluster", SLURM))
    assert reg.get("site.cluster")["job_manager_endpoint"].startswith("slurm+ssh://")
    assert reg.get("site.cluster", schema="local")["job_manager_endpoint"] == \
        "slurm://localhost/"
    with pytest.raises(BadParameter, match="no access schema"):
        reg.get("site.cluster", schema="gsissh")


def test_malformed_user_config_is_reported_with_its_path(home):
    bad = home / ".rp_executor/configs/resource_bad.json"
    bad.parent.mkdir(parents=True)
    bad.write_text("[1, 2]")
    with pytest.raises(BadParameter, match="resource_bad.json"):
        ResourceRegistry()


def test_registry_without_builtins_or_user_dirs_is_empty(tmp_path):
    reg = ResourceRegistry(load_builtin=False, user_dirs=[tmp_path])
    assert reg.list() == []
    with pytest.raises(DoesNotExist, match="none"):
        reg.get("local.localhost")
