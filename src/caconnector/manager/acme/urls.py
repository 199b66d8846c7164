"""The URLs of one profile's ACME directory, absolute as RFC 8555 wants them, built from the address
the client used (so the JWS `url` the client signed can be compared with the request's)."""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import quote

PREFIX = "/acme"


@dataclass(frozen=True)
class Urls:
    base: str  # https://host:port[/root]/acme/<profile>

    @classmethod
    def of(cls, origin: str, root_path: str, profile_name: str) -> Urls:
        return cls(f"{origin}{root_path}{PREFIX}/{quote(profile_name, safe='')}")

    @property
    def directory(self) -> str:
        return f"{self.base}/directory"

    @property
    def new_nonce(self) -> str:
        return f"{self.base}/new-nonce"

    @property
    def new_account(self) -> str:
        return f"{self.base}/new-account"

    @property
    def new_order(self) -> str:
        return f"{self.base}/new-order"

    @property
    def revoke_cert(self) -> str:
        return f"{self.base}/revoke-cert"

    @property
    def key_change(self) -> str:
        return f"{self.base}/key-change"

    @property
    def renewal_info(self) -> str:
        return f"{self.base}/renewal-info"

    def account(self, account_id: str) -> str:
        return f"{self.base}/acct/{account_id}"

    def orders(self, account_id: str) -> str:
        return f"{self.base}/acct/{account_id}/orders"

    def order(self, order_id: str) -> str:
        return f"{self.base}/order/{order_id}"

    def finalize(self, order_id: str) -> str:
        return f"{self.base}/order/{order_id}/finalize"

    def authz(self, authz_id: str) -> str:
        return f"{self.base}/authz/{authz_id}"

    def challenge(self, authz_id: str, kind: str) -> str:
        return f"{self.base}/chall/{authz_id}/{kind}"

    def certificate(self, certificate_id: str) -> str:
        return f"{self.base}/cert/{certificate_id}"
