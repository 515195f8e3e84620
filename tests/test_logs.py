"""The tool's lines: module loggers under `lowrank_audit`, shown by one handler exactly as they were logged."""

import logging

from lowrank_audit.logs import show_lines


def test_shown_lines_reach_one_handler_as_they_are_and_only_while_shown(caplog, monkeypatch):
    monkeypatch.setattr(logging.getLogger(), "level", logging.ERROR)  # what noise.quiet_libraries sets
    written = []
    with show_lines(written.append):
        logging.getLogger("lowrank_audit.sweep").info("run debias / lora r=1 [x] failed: 100% (of %s)")
        logging.getLogger("lowrank_audit.audit").warning("warning: another base")
        logging.getLogger("transformers").warning("the libraries' noise")
    logging.getLogger("lowrank_audit.sweep").info("after")
    assert written == ["run debias / lora r=1 [x] failed: 100% (of %s)", "warning: another base"]
    assert not any(r.name.startswith("lowrank_audit") for r in caplog.records)  # not printed a second time by root's
    assert logging.getLogger("lowrank_audit").level == logging.NOTSET and logging.getLogger("lowrank_audit").propagate
