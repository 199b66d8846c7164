"""What a backend option is: the `option()` field and its markers, the `BackendConfig` base every backend
type's config model derives from, and the checks several types share.

Field names are the CLI option names (`-accesskeyid`, `-region`, ...). Each field carries a description
(shown in help and in error messages) and markers in `json_schema_extra`:

- `secret`: stored encrypted, masked in `backend show`, never printed or logged;
- `file`: the option takes a path; the CLI reads the file and the model holds its content, so the
  original can be deleted after `backend add`;
- `immutable`: fixed at `backend add` (e.g. the local CA's key); `backend update` refuses to change it.

A model validates what it can without the network; `check()` tests the rest against the CA. This module
is apart from `configs` (which lists every type's model) so that a type's own `config.py` can derive from
the base without an import cycle.
"""

from __future__ import annotations

import ipaddress
from typing import Any, ClassVar, TypeVar
from urllib.parse import urlsplit

from pydantic import BaseModel, ConfigDict, Field, SecretStr


def option(
    description: str,
    *,
    default: Any = None,
    secret: bool = False,
    file: bool = False,
    immutable: bool = False,
    metavar: str | None = None,
    required: bool = False,
) -> Any:
    """A config field with the markers the CLI and the store read. `required` fields have no default."""
    extra: dict[str, Any] = {"secret": secret, "file": file, "immutable": immutable}
    if metavar:
        extra["metavar"] = metavar
    if required:
        return Field(description=description, json_schema_extra=extra)
    return Field(default=default, description=description, json_schema_extra=extra)


def _marker(model: type[BaseModel], field: str, name: str) -> bool:
    extra = model.model_fields[field].json_schema_extra
    return bool(isinstance(extra, dict) and extra.get(name))


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def check_endpoint(url: str | None) -> str | None:
    """https only, except plain http on loopback (tests, local peers)."""
    if url is None:
        return None
    parts = urlsplit(url)
    if parts.scheme not in ("https", "http") or not parts.hostname:
        raise ValueError("must be a URL such as https://host[:port]/path")
    if parts.scheme == "http" and not _is_loopback(parts.hostname):
        raise ValueError("must use https:// (plain http:// is accepted only for loopback addresses)")
    return url.rstrip("/")


def check_certificates(pem: str | None) -> str | None:
    """PEM text holding at least one certificate (a `-cacert` or `-roots` file's contents)."""
    if pem is None:
        return None
    # Imported here: listing the options of every type must not cost the X.509 code's import.
    from caconnector.pki.chain import load_certificates  # noqa: PLC0415
    from caconnector.pki.errors import PKIError  # noqa: PLC0415

    try:
        load_certificates(pem.encode())
    except PKIError as exc:
        raise ValueError(f"is not a PEM file of CA certificates ({exc})") from None
    return pem


class BackendConfig(BaseModel):
    """Base of every backend type's config. Frozen, and unknown fields are refused."""

    model_config = ConfigDict(extra="forbid", frozen=True, hide_input_in_errors=True)

    type_name: ClassVar[str]

    @classmethod
    def is_secret(cls, field: str) -> bool:
        return _marker(cls, field, "secret")

    @classmethod
    def is_file(cls, field: str) -> bool:
        return _marker(cls, field, "file")

    @classmethod
    def is_immutable(cls, field: str) -> bool:
        return _marker(cls, field, "immutable")

    @classmethod
    def metavar(cls, field: str) -> str:
        extra = cls.model_fields[field].json_schema_extra
        if isinstance(extra, dict) and isinstance(extra.get("metavar"), str):
            return str(extra["metavar"])
        return "FILE" if cls.is_file(field) else field.upper()

    def public_values(self) -> dict[str, Any]:
        """Non-secret values that are set, for storage and display."""
        return {
            name: value
            for name, value in self.model_dump().items()
            if value is not None and not self.is_secret(name)
        }

    def secret_values(self) -> dict[str, str]:
        """Secret values that are set, in clear, for the encrypted store only."""
        values: dict[str, str] = {}
        for name in type(self).model_fields:
            value = getattr(self, name)
            if self.is_secret(name) and value is not None:
                values[name] = value.get_secret_value() if isinstance(value, SecretStr) else str(value)
        return values


ConfigT = TypeVar("ConfigT", bound=BackendConfig)


def expect_config(config: BackendConfig, model: type[ConfigT]) -> ConfigT:
    """The config as its type's own model: a factory handed another type's config is a programming error."""
    if not isinstance(config, model):
        raise TypeError(
            f"the {model.type_name} backend type needs a {model.__name__}, not {type(config).__name__}"
        )
    return config
