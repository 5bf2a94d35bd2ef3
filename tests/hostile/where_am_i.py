"""Fails its smoke run on purpose and says where it ran: uid, whether the host's OPENAI_API_KEY is in its
environment, whether the checkout (PARAMS repo) is visible. Proves a validator ran it in a sandbox."""
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
        seen = (f"uid={os.getuid()} key={'OPENAI_API_KEY' in os.environ} "
                f"repo={os.path.exists(PARAMS.get('repo', '/nonexistent'))}")
        raise ValueError(seen)
