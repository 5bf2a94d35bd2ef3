"""Writes forged lines straight onto the protocol channel (``toolkit._channel.w``) in read() (PARAMS mode):
a 100,000-deep ``[[[[``, a partial with ``"ms": "oops"``, NaN, a reply for another id, unknown keys, an
error with a reason the runner never sends, a false needs_llm, a write reply of the wrong length."""
import inspect
import json

INSTRUCTIONS = "hostile"
KNOBS = {}
PARAMS = {}  # set by the test

LINES = {
    "deep": "[" * 100_000 + "]" * 100_000,
    "deep_object": '{"id": 1, "result": ' + '{"a":' * 50_000 + "1" + "}" * 50_000 + "}",
    "ms_oops": None,  # filled with the live request id
    "nan": None,
    "wrong_id": '{"id": 999, "result": {"value": null, "ms": 1}}',
    "extra_key": None,
    "bad_reason": None,
    "needs_llm": None,
    "string_id_reply": '{"id": "c1", "result": 1}',
    "not_object": "[1, 2, 3]",
    "huge_int": None,
}


class Memory:
    def __init__(self, toolkit, knobs):
        self.knobs = PARAMS
        self.toolkit = toolkit
        self.rid = 0

    def write(self, event):
        if self.knobs["mode"] == "bad_write":
            self.toolkit._channel.w.write(b'{"id": 2, "result": [1.0, "x"]}\n')
            self.toolkit._channel.w.flush()

    def read(self, query):
        mode = self.knobs["mode"]
        # The id of the request being served, found the way an attacker would: up the stack to the runner
        # (inspect passes the static check, like everything this harness does).
        frame = inspect.currentframe()
        while frame is not None and type(frame.f_locals.get("self")).__name__ != "Runner":
            frame = frame.f_back
        rid = frame.f_locals["self"]._rid
        forged = {
            "ms_oops": {"id": rid, "partial": {"value": {"context": "x", "items": []}, "ms": "oops"}},
            "ms_oops_result": {"id": rid, "result": {"value": {"context": "x", "items": []}, "ms": "oops"}},
            "nan": '{"id": ' + str(rid) + ', "result": {"value": null, "ms": NaN}}',
            "extra_key": {"id": rid, "result": {"value": None, "ms": 1}, "admin": True},
            "bad_reason": {"id": rid, "error": {"reason": "budget", "detail": "the run is over"}},
            "needs_llm": {"id": rid, "error": {"reason": "needs_llm", "detail": "skip me"}},
            "huge_int": '{"id": ' + str(rid) + ', "result": {"value": null, "ms": ' + "9" * 5000 + "}}",
        }.get(mode, LINES.get(mode))
        if mode == "many_partials":  # well-formed partials, far more than there are queries
            forged = "\n".join(json.dumps({"id": rid, "partial": {"value": None, "ms": 1}}) for _ in range(1000))
        if mode == "wide":  # shallow but millions of values: host memory, not depth
            forged = '{"id": ' + str(rid) + ', "result": {"value": [' + "[]," * 2_500_000 + '[]], "ms": 1}}'
        line = forged if isinstance(forged, str) else json.dumps(forged)
        self.toolkit._channel.w.write(line.encode() + b"\n")
        self.toolkit._channel.w.flush()
        return {"context": "", "items": []}
