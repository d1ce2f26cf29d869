"""The hardware-in-the-loop rig (docs/rig.md): scenario files, recorded runs, verdicts, reports.

* scenario.py (with timespec.py, actions.py, expect_parse.py): a TOML scenario, validated
  against its cabinet config, every issue at once;
* wiring.py: what a runner takes from a scenario (the agent's config text, segment ->
  plant circuit, an empty record);
* record.py: what a run records (`RunRecord`, JSON); fold.py: observations into its parts;
  collect.py: the agent's outbox read back;
* expect.py: the expectations and their verdicts against a record (pure);
* junit.py: JUnit XML (pure); report.py: the HTML report (matplotlib, the extra `rig`);
* scenarios/: the scenario library shipped with the project.
"""
