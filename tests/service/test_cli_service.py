"""``recforget service ...`` and ``recforget audit`` through click's runner (SQLite)."""

from __future__ import annotations

import json

from click.testing import CliRunner

from recforget.cli import main


def test_service_commands_end_to_end(tmp_path, tiny_model):
    tiny_model.save(tmp_path / "model")
    home = str(tmp_path / "svc")
    run = CliRunner().invoke
    r = run(main, ["service", "init", "--home", home, str(tmp_path / "model")])
    assert r.exit_code == 0, r.output
    assert f"{tiny_model.seen_.nnz} interactions imported, version 1 serving" in r.output
    r = run(main, ["service", "init", "--home", home, str(tmp_path / "model")])
    assert r.exit_code == 1 and "already holds a service" in r.output
    args = ["service", "submit", "--home", home, "--client", "crm", "--ground", "GDPR"]
    r = run(main, [*args, "--key", "a", "--user", "u1", "--json"])
    assert r.exit_code == 0, r.output
    rid = json.loads(r.output)["request_id"]
    r = run(main, [*args, "--key", "b", "--pair", "u2"])
    assert r.exit_code == 2 and "USER,ITEM" in r.output
    r = run(main, ["service", "worker", "--home", home, "--window", "0", "--idle-exit", "0.2"])
    assert r.exit_code == 0, r.output
    r = run(main, ["service", "status", "--home", home, rid])
    st = json.loads(r.output)
    assert st["state"] == "COMPLETED" and st["receipt"]["receipt"]["certified"]
    r = run(main, ["service", "status", "--home", home])
    assert "COMPLETED=1" in r.output and "serving version 2" in r.output
    (tmp_path / "rows.csv").write_text("user,item,value\nnewbie,i1,1\nu1,i2,1\n")
    r = run(main, ["service", "ingest", "--home", home, str(tmp_path / "rows.csv")])
    assert r.exit_code == 1 and "line(s) 3" in r.output and "nothing was ingested" in r.output
    (tmp_path / "rows.csv").write_text("user,item\nnewbie,i1\n")
    r = run(main, ["service", "ingest", "--home", home, str(tmp_path / "rows.csv")])
    assert r.exit_code == 0 and "1 inserted" in r.output
    r = run(main, ["service", "export", "--home", home, "--receipts"])
    lines = [json.loads(x) for x in r.output.splitlines()]
    assert [x["type"] for x in lines] == ["request", "receipt"]
    r = run(main, ["audit", "--home", home])
    assert r.exit_code == 0 and r.output.startswith("OK: 1 receipts"), r.output
    r = run(main, ["service", "retrain", "--home", home])
    assert r.exit_code == 0 and "version 3 serving" in r.output
    r = run(main, ["audit", "--home", home, "--json"])
    assert r.exit_code == 0 and json.loads(r.output)["ok"]
    r = run(main, ["service", "status", "--home", str(tmp_path / "nowhere")])
    assert r.exit_code == 1 and "not a service home" in r.output
