#!/usr/bin/env python3
"""Offline validation of the deploy templates (CI runs it from .ci/run).

For each template: cfn-lint with the SAM transform applied (cfn-lint 1.51.0 + aws-sam-translator 1.110.0,
pinned in infra/requirements.txt), then our own security rules. Then every check is proven able to fail: broken
variants are derived from the real template by small edits, and each must be rejected for the expected reason.
Prints one line per check and a closing `N passed, M failed`; exits non-zero on any failure.
"""
import json
import pathlib
import subprocess
import sys
import tempfile

from cfnlint.decode import decode_str

ROOT = pathlib.Path(__file__).resolve().parent
SAM = ROOT / "aws" / "template.yaml"


def cfn_lint(path: pathlib.Path) -> list[str]:
    result = subprocess.run(
        [str(pathlib.Path(sys.executable).parent / "cfn-lint"), "--format", "parseable", str(path)],
        capture_output=True,
        text=True,
    )
    return [line for line in (result.stdout + result.stderr).splitlines() if line.strip()]


def resources(template: dict, kind: str) -> dict:
    return {name: r for name, r in template.get("Resources", {}).items() if r.get("Type") == kind}


def security_findings(text: str) -> list[str]:
    """Our rules: what the incumbents' templates got wrong (plaintext keys, unencrypted queues, lost events)."""
    template, matches = decode_str(text)
    if matches or template is None:
        return [f"template does not parse: {m}" for m in matches] or ["template does not parse"]
    findings = []
    param = template.get("Parameters", {}).get("LogTypeConfig", {})
    if str(param.get("NoEcho", "false")).lower() != "true":
        findings.append("parameter LogTypeConfig must be NoEcho")
    for name, fn in resources(template, "AWS::Serverless::Function").items():
        variables = fn.get("Properties", {}).get("Environment", {}).get("Variables", {})
        for key, value in variables.items():
            if key.lower() == "logtypeconfig" or value == {"Ref": "LogTypeConfig"}:
                findings.append(f"{name}: the logtypeconfig must not be a plaintext environment variable ({key})")
        invoke = fn.get("Properties", {}).get("EventInvokeConfig", {})
        if "OnFailure" not in invoke.get("DestinationConfig", {}):
            findings.append(f"{name}: EventInvokeConfig needs an OnFailure destination (undelivered events kept)")
        if "MaximumEventAgeInSeconds" not in invoke:
            findings.append(f"{name}: EventInvokeConfig needs a bounded MaximumEventAgeInSeconds")
    permissions = {
        name
        for name, p in resources(template, "AWS::Lambda::Permission").items()
        if p.get("Properties", {}).get("Principal") == "logs.amazonaws.com"
    }
    for name, f in resources(template, "AWS::Logs::SubscriptionFilter").items():
        depends = f.get("DependsOn", [])
        depends = [depends] if isinstance(depends, str) else depends
        if not permissions.intersection(depends):
            findings.append(f"{name}: must DependsOn the logs.amazonaws.com invoke permission")
        if "RoleArn" in f.get("Properties", {}):
            findings.append(f"{name}: a Lambda destination takes no RoleArn")
    for name, q in resources(template, "AWS::SQS::Queue").items():
        props = q.get("Properties", {})
        if props.get("SqsManagedSseEnabled") is not True and "KmsMasterKeyId" not in props:
            findings.append(f"{name}: queue must be encrypted")
    return findings


def checkov(path: pathlib.Path) -> list[str]:
    """checkov (offline, no guideline download); every suppression must say why."""
    findings = []
    template, _ = decode_str(path.read_text())
    for name, r in (template or {}).get("Resources", {}).items():
        for skip in r.get("Metadata", {}).get("checkov", {}).get("skip", []):
            if not str(skip.get("comment", "")).strip():
                findings.append(f"{name}: checkov suppression {skip.get('id')} has no reason")
    result = subprocess.run(
        [str(pathlib.Path(sys.executable).parent / "checkov"), "-f", str(path), "--framework", "cloudformation",
         "--skip-download", "--output", "json", "--quiet"],
        capture_output=True,
        text=True,
    )
    try:
        report = json.loads(result.stdout)
    except json.JSONDecodeError:
        return findings + [f"checkov did not run: {result.stderr.strip()[-300:]}"]
    reports = report if isinstance(report, list) else [report]
    for r in reports:
        for failed in r.get("results", {}).get("failed_checks", []):
            findings.append(f"checkov {failed['check_id']} {failed['resource']}: {failed['check_name']}")
    return findings


def check_template(path: pathlib.Path) -> list[str]:
    return cfn_lint(path) + security_findings(path.read_text()) + checkov(path)


# (name, edit of the real template, text expected in the findings)
BROKEN_SAM = [
    # Only visible after the SAM transform (proves cfn-lint really applies it).
    ("bad architecture", ("Architectures: [!Ref Architecture]", "Architectures: [arm65]"), "arm65"),
    ("plaintext key", ("          LOGTYPECONFIG_SECRET_ARN: !Ref LogTypeConfigSecret",
                       "          logTypeConfig: !Ref LogTypeConfig"), "plaintext environment variable"),
    ("key echoed", ("    NoEcho: true\n", ""), "NoEcho"),
    ("filter races its permission", ("    DependsOn: LogsInvokePermission\n", ""), "DependsOn"),
    ("unencrypted queue", ("      SqsManagedSseEnabled: true\n", ""), "encrypted"),
    ("a finding left unexplained", ("          - id: CKV_AWS_117\n", "          - id: CKV_AWS_117\n            comment: \"\"\n          - id: CKV_AWS_999\n"), "CKV_AWS_117"),
    ("a checkov finding not suppressed", ("- id: CKV_AWS_117", "- id: CKV_AWS_000"), "checkov CKV_AWS_117"),
    ("events dropped on failure", ("        DestinationConfig:\n          OnFailure:\n            Type: SQS\n            Destination: !GetAtt FailureQueue.Arn\n", ""), "OnFailure"),
]


def main() -> int:
    passed, failed = 0, 0

    def report(ok: bool, line: str) -> None:
        nonlocal passed, failed
        passed, failed = passed + ok, failed + (not ok)
        print(("ok   " if ok else "FAIL ") + line)

    findings = check_template(SAM)
    report(not findings, f"{SAM.relative_to(ROOT.parent)}: " + ("clean" if not findings else "; ".join(findings)))

    good = SAM.read_text()
    with tempfile.TemporaryDirectory() as tmp:
        for name, (old, new), expected in BROKEN_SAM:
            if old not in good:
                report(False, f"broken variant '{name}': the edit no longer applies to the template")
                continue
            # Keep the file next to the original so relative CodeUri paths still resolve.
            path = pathlib.Path(tmp) / "template.yaml"
            path.write_text(good.replace(old, new, 1))
            findings = check_template(path)
            caught = any(expected in f for f in findings)
            report(caught, f"broken variant '{name}' is rejected" + ("" if caught else f" (findings: {json.dumps(findings)})"))

    print(f"{passed} passed, {failed} failed")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
