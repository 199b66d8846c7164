"""The manager's rules, without HTTP: each function takes a session, the time and the actor."""
