"""Security contexts: types, saga attribute names, errors, and secrets kept out of logs."""

from __future__ import annotations

import logging
import stat

import pytest

from rp_executor.context import CONTEXT_TYPES, Context
from rp_executor.exceptions import BadParameter


@pytest.mark.parametrize("ctype", ["ssh", "userpass", "x509", "globus"])
def test_each_context_type_is_created_with_saga_defaults(ctype):
    ctx = Context(ctype)
    assert ctx.type == ctype
    assert ctx.user_id is None
    assert ctx.life_time == -1


@pytest.mark.parametrize("given,stored", [("SSH", "ssh"), ("UserPass", "userpass"),
                                          ("X509", "x509"), ("Globus", "globus")])
def test_context_type_is_matched_case_insensitively_and_stored_lower_case(given, stored):
    assert Context(given).type == stored


def test_unknown_context_type_names_the_value_and_the_allowed_types():
    with pytest.raises(BadParameter) as exc:
        Context("myproxy")
    assert exc.value.attribute == "ctype"
    assert exc.value.value == "myproxy"
    for allowed in CONTEXT_TYPES:
        assert allowed in str(exc.value)


def test_ssh_context_takes_attributes_from_the_dict():
    ctx = Context("ssh", {"user_id": "alice", "user_key": "~/.ssh/id_rsa",
                          "remote_host": "login.example.org", "remote_port": 2222})
    assert ctx.user_id == "alice"
    assert ctx.user_key == "~/.ssh/id_rsa"
    assert ctx.remote_host == "login.example.org"
    assert ctx.remote_port == 2222


def test_userpass_attributes_set_after_creation_are_read_back():
    ctx = Context("userpass")
    ctx.user_id = "bob"
    ctx.user_pass = "hunter2"
    assert (ctx.user_id, ctx.user_pass) == ("bob", "hunter2")


def test_x509_context_holds_proxy_vo_and_lifetime():
    ctx = Context("x509", {"user_proxy": "/tmp/x509up_u1000", "user_vo": "atlas",
                           "life_time": 3600, "cert_repository": "/etc/grid-security"})
    assert ctx.user_proxy == "/tmp/x509up_u1000"
    assert ctx.user_vo == "atlas"
    assert ctx.life_time == 3600
    assert ctx.cert_repository == "/etc/grid-security"


def test_globus_context_has_service_account_token_file_and_collections():
    ctx = Context("globus", {"client_id": "cid", "client_secret": "csecret",
                             "token_file": "/tmp/tokens.json",
                             "collections": {"uuid-1": "/data/ep1"}})
    assert ctx.client_id == "cid"
    assert ctx.client_secret == "csecret"
    assert ctx.token_file == "/tmp/tokens.json"
    assert ctx.collections == {"uuid-1": "/data/ep1"}


def test_globus_collections_default_to_a_fresh_empty_dict_per_context():
    a, b = Context("globus"), Context("globus")
    a.collections["uuid"] = "/x"
    assert b.collections == {}


def test_globus_only_attributes_are_refused_on_other_types():
    with pytest.raises(BadParameter, match="only for 'globus'"):
        Context("ssh", {"client_id": "cid"})


@pytest.mark.parametrize("camel,snake,value", [
    ("UserID", "user_id", "alice"), ("UserPass", "user_pass", "pw"),
    ("UserKey", "user_key", "/k"), ("UserCert", "user_cert", "/c"),
    ("Server", "server", "myproxy.org"), ("Token", "token", "tok"),
    ("LifeTime", "life_time", 60), ("RemoteHost", "remote_host", "h"),
    ("RemotePort", "remote_port", 22), ("RemoteID", "remote_id", "rid"),
    ("UserProxy", "user_proxy", "/p"), ("UserVO", "user_vo", "vo"),
    ("CertRepository", "cert_repository", "/certs"),
])
def test_saga_camel_case_keys_map_to_the_snake_case_attributes(camel, snake, value):
    ctx = Context("ssh", {camel: value})
    assert getattr(ctx, snake) == value
    assert ctx[camel] == value
    assert ctx[snake] == value
    ctx[camel] = value
    assert ctx.as_dict()[snake] == value


def test_type_is_readable_under_saga_key_and_fixed_after_creation():
    ctx = Context("ssh")
    assert ctx["Type"] == ctx["type"] == "ssh"
    with pytest.raises(BadParameter, match="fixed"):
        ctx["Type"] = "x509"


def test_unknown_attribute_is_refused_with_a_suggestion():
    ctx = Context("ssh")
    with pytest.raises(BadParameter, match="did you mean 'user_id'") as exc:
        ctx.usr_id = "alice"
    assert exc.value.attribute == "usr_id"
    with pytest.raises(BadParameter, match="did you mean 'user_pass'"):
        Context("userpass", {"user_pas": "pw"})
    with pytest.raises(BadParameter, match="did you mean"):
        ctx["UserIDD"]


def test_unknown_attribute_read_still_lets_hasattr_answer_false():
    ctx = Context("ssh")
    assert not hasattr(ctx, "no_such_thing")
    assert "no_such_thing" not in ctx
    assert "UserID" in ctx


def test_life_time_must_be_an_int():
    with pytest.raises(BadParameter, match="life_time"):
        Context("x509", {"life_time": "forever"})


def test_repr_and_str_never_show_secret_values():
    ctx = Context("globus", {"user_id": "alice", "user_pass": "pw-SECRET-1",
                             "token": "tok-SECRET-2", "client_secret": "cs-SECRET-3"})
    for text in (repr(ctx), str(ctx), f"{ctx}"):
        assert "SECRET" not in text
        assert "***" in text
        assert "alice" in text


def test_logging_a_context_does_not_leak_secrets(caplog):
    ctx = Context("userpass", {"user_id": "bob", "user_pass": "pw-SECRET"})
    with caplog.at_level(logging.INFO):
        logging.getLogger("test").info("using %s / %r", ctx, ctx)
    assert "pw-SECRET" not in caplog.text


def test_bad_secret_value_error_does_not_echo_the_secret():
    with pytest.raises(BadParameter) as exc:
        Context("userpass", {"user_pass": 12345678})
    assert "12345678" not in str(exc.value)


def test_as_dict_includes_secrets_and_type():
    ctx = Context("userpass", {"user_id": "bob", "user_pass": "pw"})
    d = ctx.as_dict()
    assert d["type"] == "userpass"
    assert d["user_pass"] == "pw"


def test_as_dict_is_a_copy():
    ctx = Context("globus", {"collections": {"u": "/a"}})
    ctx.as_dict()["collections"]["v"] = "/b"
    assert ctx.collections == {"u": "/a"}


@pytest.mark.parametrize("ctype", CONTEXT_TYPES)
def test_from_dict_round_trips_as_dict(ctype):
    attrs = {"user_id": "u", "user_pass": "p", "remote_port": 22, "life_time": 10}
    if ctype == "globus":
        attrs.update(client_id="c", collections={"uuid": "/p"})
    ctx = Context(ctype, attrs)
    again = Context.from_dict(ctx.as_dict())
    assert again == ctx
    assert again.type == ctype


def test_from_dict_takes_the_type_from_the_dict_not_the_dict_as_type():
    ctx = Context.from_dict({"type": "ssh", "UserID": "alice"})
    assert ctx.type == "ssh"
    assert ctx.user_id == "alice"


def test_from_dict_without_type_is_refused():
    with pytest.raises(BadParameter, match="'type'"):
        Context.from_dict({"user_id": "alice"})


def test_a_type_in_the_attributes_must_match_ctype():
    with pytest.raises(BadParameter, match="does not match"):
        Context("ssh", {"type": "x509"})


def test_contexts_with_equal_attributes_are_equal():
    assert Context("ssh", {"user_id": "a"}) == Context("SSH", {"UserID": "a"})
    assert Context("ssh", {"user_id": "a"}) != Context("ssh", {"user_id": "b"})
    assert Context("ssh") != Context("x509")


def test_globus_tokens_are_written_owner_readable_only(tmp_path):
    path = tmp_path / "sub" / "tokens.json"
    ctx = Context("globus", {"token_file": str(path)})
    written = ctx.write_tokens({"transfer.api.globus.org": {"access_token": "t"}})
    assert written == path
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert ctx.read_tokens() == {"transfer.api.globus.org": {"access_token": "t"}}
    assert [p.name for p in path.parent.iterdir()] == ["tokens.json"]


def test_rewriting_a_loose_token_file_makes_it_owner_only(tmp_path):
    path = tmp_path / "tokens.json"
    path.write_text("{}")
    path.chmod(0o644)
    Context("globus", {"token_file": path}).write_tokens({"a": 1})
    assert stat.S_IMODE(path.stat().st_mode) == 0o600


def test_missing_token_file_reads_as_no_tokens(tmp_path):
    assert Context("globus", {"token_file": str(tmp_path / "none.json")}).read_tokens() == {}


def test_token_file_needs_a_globus_context_with_token_file():
    with pytest.raises(BadParameter, match="no 'token_file'"):
        Context("globus").write_tokens({})
    with pytest.raises(BadParameter, match="only 'globus'"):
        Context("ssh").read_tokens()
