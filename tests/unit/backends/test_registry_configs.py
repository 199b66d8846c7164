"""The config models of all seven backend types and discovery by entry point."""

from __future__ import annotations

from importlib.metadata import EntryPoint

import pytest
from pydantic import SecretStr, ValidationError

from caconnector.backends import registry
from caconnector.backends.configs import BUILTIN_CONFIGS, AcmeConfig, AcmpcaConfig, LocalConfig, MscaConfig
from caconnector.backends.registry import BackendTypeUnavailable, UnknownBackendType

# cli.md's option table, exactly.
CLI_OPTIONS = {
    "acmpca": {"accesskeyid", "secretaccesskey", "region", "endpoint", "auditbucket"},
    "digicert": {"apikey", "region", "endpoint", "cacert"},
    "entrust": {"username", "apikey", "cert", "key", "endpoint", "cacert"},
    "gcpcas": {"project", "location", "key", "endpoint"},
    "msca": {"server", "ca", "transport", "auth", "username", "password", "endpoint", "cacert", "requester"}
    | {"eacert", "eakey"},
    "local": {"subject", "keytype", "days", "cacert", "cakey"},
    # cli.md's row plus issue 15's -hook, -httpaddress, -cacert, and what the backend needs besides: the
    # roots that end chains, the preferred alternate chain, the wait for issuance, the account made at add.
    "acme": {
        "directory",
        "email",
        "eabkid",
        "eabhmac",
        "challenge",
        "hook",
        "httpaddress",
        "cacert",
        "roots",
        "preferredchain",
        "wait",
        "accountkey",
        "accounturl",
    },
}
SECRET_FIELDS = {
    "acmpca": {"secretaccesskey"},
    "digicert": {"apikey"},
    "entrust": {"username", "apikey", "cert", "key"},
    "gcpcas": {"key"},
    "msca": {"password", "eacert", "eakey"},
    "local": {"cakey"},
    "acme": {"eabhmac", "accountkey"},
}


def test_every_type_has_the_cli_options_and_marks_its_secrets() -> None:
    assert set(BUILTIN_CONFIGS) == set(CLI_OPTIONS)
    for name, model in BUILTIN_CONFIGS.items():
        assert set(model.model_fields) == CLI_OPTIONS[name], name
        assert {f for f in model.model_fields if model.is_secret(f)} == SECRET_FIELDS[name], name
        for field_name, field in model.model_fields.items():
            assert field.description, f"{name} -{field_name} has no description"


def test_secret_values_never_in_repr_or_errors() -> None:
    config = AcmpcaConfig(
        accesskeyid="AKIAIOSFODNN7EXAMPLE", secretaccesskey=SecretStr("hunter2-secret"), region="us-east-1"
    )
    assert "hunter2-secret" not in repr(config)
    assert "hunter2-secret" not in str(config.public_values())
    assert config.secret_values() == {"secretaccesskey": "hunter2-secret"}
    with pytest.raises(ValidationError) as caught:
        AcmpcaConfig.model_validate(
            {"accesskeyid": "bad", "secretaccesskey": "hunter2-secret", "region": "us-east-1"}
        )
    assert "hunter2-secret" not in str(caught.value)


def test_model_rules() -> None:
    with pytest.raises(ValidationError, match="-cacert and -cakey go together"):
        LocalConfig.model_validate({"cakey": "x"})
    with pytest.raises(ValidationError, match="-eabkid and -eabhmac go together"):
        AcmeConfig.model_validate({"directory": "https://acme.example/dir", "eabkid": "kid"})
    with pytest.raises(ValidationError, match="plain http:// is accepted only for loopback"):
        AcmeConfig.model_validate({"directory": "http://acme.example/dir"})
    assert AcmeConfig.model_validate({"directory": "http://127.0.0.1:14000/dir/"}).directory.endswith("/dir")
    assert MscaConfig.model_validate({"server": "s", "ca": "c"}).transport == "rpc"


def test_registry_knows_all_types_and_loads_local() -> None:
    types = registry.known_types()
    assert set(types) >= set(CLI_OPTIONS)
    assert types["local"].entry_point is not None
    assert registry.load_type("local").type_name == "local"


def test_unavailable_and_unknown_types_are_named() -> None:
    # The built-in types whose backend has not landed yet (none, once all have).
    for name, known in registry.known_types().items():
        if known.entry_point is None:
            with pytest.raises(BackendTypeUnavailable, match=f"'{name}' is not available in this version"):
                registry.load_type(name)
    with pytest.raises(UnknownBackendType, match="unknown backend type 'vault'; use one of: local"):
        registry.load_type("vault")


def test_missing_sdk_names_the_extra() -> None:
    point = EntryPoint(
        name="acmpca", value="caconnector_missing_sdk_module:Factory", group=registry.ENTRY_POINT_GROUP
    )
    with pytest.raises(BackendTypeUnavailable, match=r"pip install 'caconnector\[acmpca\]'"):
        registry._load(point)
