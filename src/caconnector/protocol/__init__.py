"""The wire contract between the manager and its connectors: messages, error codes, the protocol
version, and request signing. Imports only `pki`; both programs import this, and nothing else of each
other."""
