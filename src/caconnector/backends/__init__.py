"""CA backends: the contract (`base`), the typed errors (`errors`), the config models of every backend
type (`configs`), discovery by entry point (`registry`), and one module per backend type."""
