"""ComputePilotDescription and ComputeUnitDescription: defaults, access, checks."""

from __future__ import annotations

import copy
import pickle
import warnings

import pytest

from rp_executor.description import (
    ComputePilotDescription as CPD,
    ComputeUnitDescription as CUD,
)
from rp_executor.exceptions import BadParameter

PILOT_DEFAULTS = {
    "resource": None, "access_schema": None, "runtime": None, "sandbox": None,
    "cores": 0, "gpus": 0, "oversubscribe": False, "memory": None, "queue": None, "project": None,
    "cleanup": None, "candidate_hosts": None, "exit_on_error": False, "_config": None,
    "input_staging": [], "output_staging": [], "output": None, "error": None,
    "provider": None,
}

UNIT_DEFAULTS = {
    "executable": None, "function": None, "args": [], "kwargs": {}, "arguments": [], "environment": {}, "name": None, "kernel": None,
    "cpu_processes": 1, "cpu_process_type": "", "cpu_threads": 1, "cpu_thread_type": "",
    "gpu_processes": 0, "gpu_process_type": "", "gpu_threads": 1, "gpu_thread_type": "",
    "lfs_per_process": 0, "mem_per_process": 0, "tag": None, "tags": {}, "sandbox": None,
    "input_staging": [], "output_staging": [], "pre_exec": [], "post_exec": [],
    "stdout": None, "stderr": None, "restartable": False, "cleanup": False, "pilot": "",
    "metadata": None, "priority": 0,
}


def good_pilot(**kw):
    return CPD(resource="local.localhost", runtime=10, cores=4, **kw)


# -- defaults and access -------------------------------------------------------------------

def test_pilot_defaults_match_the_reference():
    assert CPD().as_dict() == PILOT_DEFAULTS
    assert CPD().keys() == list(PILOT_DEFAULTS)


def test_unit_defaults_match_the_reference():
    assert CUD().as_dict() == UNIT_DEFAULTS
    assert list(CUD()) == list(UNIT_DEFAULTS)


def test_mutable_defaults_are_not_shared_between_instances():
    a, b = CUD(), CUD()
    a.arguments.append("x")
    a.environment["K"] = "V"
    assert b.arguments == [] and b.environment == {}
    assert CUD().arguments == []


def test_attribute_and_item_access_see_the_same_value():
    d = CUD()
    d.executable = "/bin/date"
    assert d["executable"] == "/bin/date"
    d["arguments"] = ["-u"]
    assert d.arguments == ["-u"]
    assert d.get("arguments") == ["-u"]
    assert d.get("no_such_thing", 42) == 42
    assert "executable" in d and "no_such_thing" not in d
    assert len(d) == len(UNIT_DEFAULTS)
    assert dict(d.items())["arguments"] == ["-u"]


def test_constructor_takes_a_dict_and_keywords_with_keywords_winning():
    d = CUD({"executable": "/bin/a", "cpu_processes": 2}, executable="/bin/b")
    assert d.executable == "/bin/b" and d.cpu_processes == 2


def test_as_dict_from_dict_round_trip_gives_an_equal_description():
    d = CUD(executable="/bin/echo", arguments=["hi"], environment={"A": "1"},
            cpu_processes=4, cpu_process_type="MPI", tags={"order": 1}, metadata={"k": [1]})
    again = CUD.from_dict(d.as_dict())
    assert again == d
    assert isinstance(again, CUD)
    assert again != CUD(executable="/bin/echo")


def test_as_dict_returns_deep_copies():
    d = CUD(arguments=["a"], metadata={"k": [1]})
    out = d.as_dict()
    out["arguments"].append("b")
    out["metadata"]["k"].append(2)
    assert d.arguments == ["a"] and d.metadata == {"k": [1]}


def test_copy_is_deep_and_equal():
    d = CUD(executable="/bin/true", arguments=["a"])
    for c in (d.copy(), copy.deepcopy(d)):
        assert c == d and c is not d
        c.arguments.append("b")
        assert d.arguments == ["a"]


def test_provider_is_shared_not_copied():
    provider = object()
    p = good_pilot(provider=provider)
    assert p.copy().provider is provider
    assert p.as_dict()["provider"] is provider


def test_description_survives_pickle():
    d = CUD(executable="/bin/true", arguments=["a"], cpu_processes=3)
    assert pickle.loads(pickle.dumps(d)) == d


def test_repr_shows_only_non_default_attributes():
    r = repr(CUD(executable="/bin/date", cpu_processes=2))
    assert r == "ComputeUnitDescription(executable='/bin/date', cpu_processes=2)"
    assert repr(CPD()) == "ComputePilotDescription()"


def test_none_is_accepted_where_the_default_is_none():
    d = CUD(executable="/bin/true", name=None, stdout=None, metadata=None, tag=None)
    d.validate()
    p = good_pilot(queue=None, project=None, memory=None, cleanup=None, candidate_hosts=None)
    p.validate()


def test_valid_descriptions_validate_to_none():
    assert CUD(executable="/bin/true").validate() is None
    assert good_pilot(gpus=2, memory=1024, candidate_hosts=["n1"]).validate() is None


def test_single_staging_directive_is_wrapped_into_a_list():
    d = CUD(input_staging="in.dat", output_staging={"source": "out", "target": "o"})
    assert d.input_staging == ["in.dat"]
    assert d.output_staging == [{"source": "out", "target": "o"}]


def test_private_names_are_plain_attributes_but_config_is_declared():
    p = CPD(_config={"agent": "default"})
    assert p["_config"] == {"agent": "default"}
    p._scratch = 1
    assert p._scratch == 1
    assert "_scratch" not in p.keys()


# -- deprecated aliases --------------------------------------------------------------------

def test_cores_alias_sets_cpu_processes_with_a_deprecation_warning():
    d = CUD()
    with pytest.warns(DeprecationWarning, match="cores"):
        d.cores = 8
    assert d.cpu_processes == 8 and d.cores == 8
    with pytest.warns(DeprecationWarning):
        assert CUD(cores=3).cpu_processes == 3


def test_mpi_alias_maps_to_cpu_process_type_with_a_deprecation_warning():
    d = CUD()
    assert d.mpi is False
    with pytest.warns(DeprecationWarning, match="mpi"):
        d.mpi = True
    assert d.cpu_process_type == "MPI" and d.mpi is True
    with pytest.warns(DeprecationWarning):
        d["mpi"] = False
    assert d.cpu_process_type == "" and d["mpi"] is False


def test_reading_an_alias_does_not_warn():
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert CUD(cpu_processes=2).cores == 2


def test_aliases_are_not_listed_as_attributes():
    assert "cores" not in CUD().keys() and "mpi" not in CUD().as_dict()


@pytest.mark.parametrize("value", [True, "True"])
def test_cpu_process_type_true_becomes_mpi(value):
    assert CUD(cpu_process_type=value).cpu_process_type == "MPI"


def test_pilot_cores_is_a_real_attribute_not_an_alias():
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert CPD(cores=16).cores == 16


def test_ints_with_bool_are_rejected_but_bool_attributes_take_bools():
    assert CUD(restartable=True, cleanup=True).restartable is True


# -- invalid descriptions ------------------------------------------------------------------

def _mutated_arguments():
    d = CUD(executable="/bin/true")
    d.arguments.append({"not": "an argument"})
    d.validate()


def _alias(name, value):
    d = CUD()
    with pytest.warns(DeprecationWarning):
        setattr(d, name, value)


def _set_item(name, value):
    CUD()[name] = value


INVALID = [
    # (id, action, attribute, offending value)
    ("negative_cpu_processes", lambda: CUD(cpu_processes=-2), "cpu_processes", -2),
    ("zero_cpu_processes", lambda: CUD(cpu_processes=0), "cpu_processes", 0),
    ("bool_as_count", lambda: CUD(cpu_processes=True), "cpu_processes", True),
    ("str_as_count", lambda: CUD(cpu_processes="4"), "cpu_processes", "4"),
    ("zero_cpu_threads", lambda: CUD(cpu_threads=0), "cpu_threads", 0),
    ("negative_gpu_processes", lambda: CUD(gpu_processes=-1), "gpu_processes", -1),
    ("float_mem_per_process", lambda: CUD(mem_per_process=1.5), "mem_per_process", 1.5),
    ("negative_lfs", lambda: CUD(lfs_per_process=-5), "lfs_per_process", -5),
    ("unknown_process_type", lambda: CUD(cpu_process_type="OMP"), "cpu_process_type", "OMP"),
    ("unknown_cpu_thread_type", lambda: CUD(cpu_thread_type="CUDA"), "cpu_thread_type", "CUDA"),
    ("unknown_gpu_thread_type", lambda: CUD(gpu_thread_type="cuda"), "gpu_thread_type", "cuda"),
    ("arguments_as_str", lambda: CUD(arguments="-l -a"), "arguments", "-l -a"),
    ("non_scalar_argument", lambda: CUD(arguments=["a", None]), "arguments", ["a", None]),
    ("non_str_pre_exec", lambda: CUD(pre_exec=["ok", None]), "pre_exec", ["ok", None]),
    ("non_str_env_value", lambda: CUD(environment={"A": 1}), "environment", {"A": 1}),
    ("non_str_env_key", lambda: CUD(environment={1: "a"}), "environment", {1: "a"}),
    ("empty_executable", lambda: CUD(executable=""), "executable", ""),
    ("sandbox_out_of_the_pilot", lambda: CUD(sandbox="a/../../x"), "sandbox", "a/../../x"),
    ("empty_sandbox", lambda: CUD(sandbox=""), "sandbox", ""),
    ("int_executable", lambda: CUD(executable=42), "executable", 42),
    ("str_as_bool", lambda: CUD(restartable="yes"), "restartable", "yes"),
    ("none_where_default_is_not_none", lambda: CUD(pilot=None), "pilot", None),
    ("bad_staging_item", lambda: CUD(input_staging=[3]), "input_staging", [3]),
    ("non_str_tags_key", lambda: CUD(tags={1: 2}), "tags", {1: 2}),
    ("unknown_unit_attribute", lambda: CUD(argument=["x"]), "argument", ["x"]),
    ("unknown_item", lambda: _set_item("envirnment", {}), "envirnment", {}),
    ("bad_cores_alias", lambda: _alias("cores", 0), "cores", 0),
    ("bad_mpi_alias", lambda: _alias("mpi", "yes"), "mpi", "yes"),
    ("missing_executable", lambda: CUD(arguments=["x"]).validate(), "executable", None),
    ("in_place_mutation", _mutated_arguments, "arguments", [{"not": "an argument"}]),
    ("zero_runtime", lambda: CPD(runtime=0), "runtime", 0),
    ("negative_runtime", lambda: CPD(runtime=-5), "runtime", -5),
    ("negative_pilot_cores", lambda: CPD(cores=-1), "cores", -1),
    ("int_resource", lambda: CPD(resource=5), "resource", 5),
    ("bool_memory", lambda: CPD(memory=True), "memory", True),
    ("str_oversubscribe", lambda: CPD(oversubscribe="yes"), "oversubscribe", "yes"),
    ("candidate_hosts_as_str", lambda: CPD(candidate_hosts="n1"), "candidate_hosts", "n1"),
    ("unknown_pilot_attribute", lambda: CPD(resources="x"), "resources", "x"),
    ("pilot_without_resource", lambda: CPD(runtime=10, cores=1).validate(), "resource", None),
    ("pilot_without_runtime",
     lambda: CPD(resource="local.localhost", cores=1).validate(), "runtime", None),
    ("pilot_without_cores",
     lambda: CPD(resource="local.localhost", runtime=10).validate(), "cores", 0),
]


@pytest.mark.parametrize("action, attribute, value", [c[1:] for c in INVALID],
                         ids=[c[0] for c in INVALID])
def test_invalid_description_raises_bad_parameter_naming_attribute_and_value(
        action, attribute, value):
    with pytest.raises(BadParameter) as info:
        action()
    err = info.value
    assert err.attribute == attribute
    assert err.value == value
    assert attribute in str(err)
    # An unknown name is itself the offending value; its message is about the name.
    shown = attribute if attribute not in CUD().keys() + CPD().keys() + ["cores", "mpi"] \
        else value
    assert repr(shown) in str(err)


@pytest.mark.parametrize("name, suggestion", [("argument", "arguments"),
                                              ("cpu_process", "cpu_processes"),
                                              ("enviroment", "environment")])
def test_unknown_attribute_suggests_the_close_match(name, suggestion):
    with pytest.raises(BadParameter, match=f"did you mean '{suggestion}'"):
        setattr(CUD(), name, 1)


def test_message_names_class_attribute_value_and_what_is_allowed():
    with pytest.raises(BadParameter) as info:
        CUD(cpu_processes=-2)
    assert str(info.value) == ("ComputeUnitDescription.cpu_processes: got -2 (int); "
                               "must be an int >= 1")


def test_message_lists_allowed_enum_values():
    with pytest.raises(BadParameter, match=r"\['', 'POSIX', 'MPI'\]"):
        CUD(gpu_process_type="SHMEM")


def test_long_values_are_truncated_in_messages():
    with pytest.raises(BadParameter) as info:
        CUD(arguments=["y" * 1000, None])
    assert len(str(info.value)) < 400


def test_reading_an_unknown_attribute_raises_attribute_error_with_suggestion():
    with pytest.raises(AttributeError, match="did you mean 'executable'"):
        CUD().executabel  # noqa: B018
    assert not hasattr(CUD(), "nope")
    with pytest.raises(BadParameter):
        CUD()["nope"]


def test_failed_set_leaves_the_old_value():
    d = CUD(cpu_processes=2)
    with pytest.raises(BadParameter):
        d.cpu_processes = -1
    assert d.cpu_processes == 2


def test_from_dict_rejects_a_non_mapping():
    with pytest.raises(BadParameter) as info:
        CUD.from_dict(["executable"])
    assert info.value.attribute == "from_dict"


def test_bad_parameter_is_a_value_error():
    with pytest.raises(ValueError):
        CUD(cpu_processes=-1)
    assert issubclass(BadParameter, ValueError)


def test_a_unit_needs_an_executable_or_a_function():
    CUD(function="os.path:join", args=["a", "b"]).validate()
    CUD(function=len, args=[[1, 2]]).validate()
    with pytest.raises(BadParameter, match="'executable' or 'function'") as info:
        CUD().validate()
    assert info.value.attribute == "executable"


@pytest.mark.parametrize("kwargs, attribute", [
    (dict(function=3), "function"),
    (dict(function="os.path"), "function"),
    (dict(function=len, executable="/bin/true"), "function"),
    (dict(executable="/bin/true", args=[1]), "args"),
    (dict(executable="/bin/true", kwargs={"x": 1}), "kwargs"),
    (dict(function=len, kwargs={1: 2}), "kwargs"),
    (dict(function=len, args="abc"), "args"),
])
def test_bad_function_units_name_the_attribute(kwargs, attribute):
    with pytest.raises(BadParameter) as info:
        CUD(**kwargs).validate()
    assert info.value.attribute == attribute
    assert attribute in str(info.value)

# -- sparse storage: defaults are not copied into every description -------------------

def test_mutable_defaults_are_each_descriptions_own_and_made_on_first_use():
    a, b = CUD(executable="/bin/true"), CUD(executable="/bin/true")
    assert "arguments" not in a.__dict__          # nothing made until it is used
    a.arguments.append("x")
    a["environment"]["K"] = "v"
    assert a.arguments == ["x"] and a.arguments is a.arguments
    assert b.arguments == [] and b.environment == {}
    assert CUD(executable="/bin/true").as_dict()["arguments"] == []
    assert a.non_defaults() == {"executable": "/bin/true", "arguments": ["x"],
                                "environment": {"K": "v"}}


def test_copies_and_pickles_of_sparse_descriptions_compare_equal():
    d = CUD(executable="/bin/echo", cpu_threads=2)
    for other in (d.copy(), copy.deepcopy(d), pickle.loads(pickle.dumps(d)),
                  CUD(d.as_dict())):
        assert other == d
        assert other.cpu_threads == 2 and other.arguments == [] and other.name is None
    d.arguments.append("changed")
    assert d.copy().arguments == ["changed"]
    assert d != CUD(executable="/bin/echo", cpu_threads=2)


def test_a_dict_from_as_dict_does_not_share_the_defaults():
    out = CPD(resource="local.localhost", runtime=5, cores=1).as_dict()
    out["input_staging"].append("x")
    assert CPD(resource="local.localhost", runtime=5, cores=1).input_staging == []


def test_an_attribute_may_not_hide_a_method():
    from rp_executor.description import Attr, Description
    with pytest.raises(TypeError, match="'copy'"):
        class Bad(Description):   # noqa: F841
            _schema = (Attr("copy", int, 0),)


# -- shapes: descriptions from one template are validated once (UnitManager.submit_units)

def test_descriptions_from_one_template_share_a_shape_whatever_their_arguments():
    # as submit_units sees them: snapshots, which hold every default container
    a = CUD(function=pow, args=[2, 1], kwargs={}, name="x")
    b = CUD(function=max, args=[5], name="x")
    assert a._snapshot()._shape() == b._snapshot()._shape() is not None


@pytest.mark.parametrize("other", [
    {"function": pow, "name": "y"},                  # another value
    {"function": pow, "name": "x", "cpu_threads": 2},   # one more
    {"executable": "/bin/true", "name": "x"},      # no function
    {"function": pow, "args": [], "name": "x"},     # empty arguments
    {"function": pow, "name": "x", "metadata": 1},  # 1 is not True
])
def test_descriptions_that_differ_in_what_validate_sees_differ_in_shape(other):
    base = CUD(function=pow, args=[1], name="x", metadata=True)
    assert base._snapshot()._shape() != CUD(**other)._snapshot()._shape()


def test_a_description_holding_a_container_has_no_shape_and_is_validated_whole():
    d = CUD(executable="/bin/echo", arguments=["x"])
    assert d._shape() is None
    assert CUD(executable="/bin/echo", arguments=[])._shape() is not None


def test_validate_shared_finds_what_changed_in_place_in_the_shared_values():
    d = CUD(function=pow, args=[2, 3], kwargs={"a": 1})
    d._validate_shared()
    d.kwargs[7] = "x"      # in place: not checked when set
    with pytest.raises(BadParameter) as err:
        d._validate_shared()
    assert err.value.attribute == "kwargs"
