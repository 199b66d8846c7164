"""The built-in backend type names, without their config models: what `ca-connector version` and `-h` need,
at no cost of importing pydantic. `configs.BUILTIN_CONFIGS` holds one model per name (a test checks it)."""

BUILTIN_TYPES = ("local", "acmpca", "digicert", "entrust", "gcpcas", "msca", "acme")
