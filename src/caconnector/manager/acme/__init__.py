"""The manager's ACME server (RFC 8555, with RFC 9773 renewal information): one directory per profile,
so any ACME client enrolls through any backend. A face over the services: finalize makes a normal
request through services.enrollment, revocation goes through services.certificates.

Not the `acme` backend (caconnector.backends.acme), which makes the connector an ACME *client*. The
top-level `acme` library is a different package: modules here use absolute imports only.
"""
