"""Fails its smoke run on purpose and says where it ran: uid, whether the host's OPENAI_API_KEY is in its
environment, whether the checkout (PARAMS repo) is visible. Proves a validator ran it in a sandbox.
It passes the static check (the environment is reached through getattr), so only the sandbox stands between."""
import os

INSTRUCTIONS = "hostile"
KNOBS = {}
PARAMS = {}  # set by the test


class Memory:
    def __init__(self, toolkit, knobs):
        pass

    def write(self, event):
        pass

    def read(self, query):
        env = getattr(os, "env" + "iron")  # past the static check, as an optimiser would find
        seen = (f"uid={os.getuid()} key={'OPENAI_API_KEY' in env} "
                f"repo={os.path.exists(PARAMS.get('repo', '/nonexistent'))}")
        raise ValueError(seen)
